"""`python -m toolserver.servers`: one tool server over stdio, configured by its environment.

Started by toolserver.launch, which leaves exactly these variables: GATEHOUSE_SERVER,
GATEHOUSE_ADAPTER, GATEHOUSE_BACKEND_URL, GATEHOUSE_BACKEND_KEY, GATEHOUSE_BACKEND_TIMEOUT_S.
With `--check` it calls the backend's health endpoint once, prints {"ok", "detail"} and exits.
"""

import asyncio
import json
import logging
import os
import sys

# Before MCPServer(): its own logging.basicConfig() then changes nothing. Logs go to stderr;
# stdout carries the protocol.
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")

from toolserver.adapters import ADAPTERS  # noqa: E402
from toolserver.catalog import SERVERS  # noqa: E402
from toolserver.servers import build_server, check_health  # noqa: E402


def main() -> None:
    name = os.environ.get("GATEHOUSE_SERVER", "")
    spec = SERVERS.get(name)
    adapter = ADAPTERS.get(name, {}).get(os.environ.get("GATEHOUSE_ADAPTER", ""))
    if spec is None or adapter is None:
        sys.stderr.write(f"toolserver: {name}: unknown server or adapter {os.environ.get('GATEHOUSE_ADAPTER', '')!r}\n")
        raise SystemExit(3)
    backend = adapter(
        url=os.environ["GATEHOUSE_BACKEND_URL"],
        credential=os.environ.pop("GATEHOUSE_BACKEND_KEY", ""),
        timeout_s=float(os.environ.get("GATEHOUSE_BACKEND_TIMEOUT_S", "10")),
    )
    if "--check" in sys.argv[1:]:
        report = asyncio.run(check_health(backend))
        print(json.dumps(report))  # noqa: T201 - --check answers on stdout
        raise SystemExit(0 if report["ok"] else 1)
    build_server(spec, backend).run()


if __name__ == "__main__":
    main()
