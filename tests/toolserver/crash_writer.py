"""One approved write through the gateway, in a process of its own that a test kills at a chosen moment.

`python -m tests.toolserver.crash_writer [TOOL ARGUMENTS_JSON]` isolates SRV-APP-03 (or calls TOOL) as an approved action's execution
does (its own Django, supervisor and edr-response server process), prints the envelope and exits.
"""

import json
import os
import sys

ISOLATE = {"host": "SRV-APP-03", "reason": "Beaconing every 60 s to a C2 domain."}
CONTEXT = {"correlation_id": "inv-crash", "trigger": "alert-crash", "approval": "crash-approval"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    import django

    django.setup()
    from toolserver.gateway import CallContext, Gateway
    from toolserver.supervisor import get_supervisor

    tool, arguments = (sys.argv[1], json.loads(sys.argv[2])) if len(sys.argv) > 2 else ("isolate_host", ISOLATE)
    print(json.dumps(Gateway().call(tool, arguments, CallContext(**CONTEXT))), flush=True)
    get_supervisor().stop()


if __name__ == "__main__":
    main()
