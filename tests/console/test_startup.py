"""Start-up in seconds (issue 20): the console imports what serving pages needs, not what only a
worker's investigation or a tool server needs (the model's SDK, mcp, a vendor's library)."""

import subprocess
import sys

from tests.support import ROOT, WAIT_S, console_env

HEAVY = ("anthropic", "mcp", "mcp_types", "stix2", "ldap3")


def test_the_console_and_its_embedded_worker_import_no_sdk_no_mcp_and_no_vendor_library():
    code = (
        "import sys, django; django.setup(); "
        "import console.urls, console.routing, console.embedded, investigations.tasks; "
        f"print(' '.join(name for name in {HEAVY!r} if name in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=console_env(DJANGO_SETTINGS_MODULE="console.settings"),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []  # each is imported when first needed (a worker: as it starts)
