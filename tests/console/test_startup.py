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
    assert printed_by(code) == []  # each is imported when first needed (a worker: as it starts)


def test_start_up_imports_pause_the_collector_then_freeze_what_they_built_and_restore_it():
    """core.startup: a tool server's and a worker's imports run without the cyclic collector, which is
    then as it was before, and what they built is left out of later collections. In a process of its
    own: frozen here, pytest's objects would stay for the rest of the run."""
    code = (
        "import gc; from core.startup import collector_paused\n"
        "frozen = gc.get_freeze_count()\n"
        "with collector_paused():\n"
        "    paused = not gc.isenabled(); built = [[i] for i in range(1000)]\n"
        "print(paused, gc.isenabled(), gc.get_freeze_count() - frozen >= 1000)\n"
        "gc.disable()\n"
        "with collector_paused(): pass\n"
        "print(gc.isenabled())\n"
    )
    assert printed_by(code) == ["True", "True", "True", "False"]


def printed_by(code: str) -> list[str]:
    """The words `code` prints, run in a Python process of its own (its imports and collector are its own)."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=console_env(DJANGO_SETTINGS_MODULE="console.settings"),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()
