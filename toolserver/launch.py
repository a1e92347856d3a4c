"""Start one tool server process with its own credential, and nothing else, in its environment.

The supervisor runs `python -m toolserver.launch` with the server's name, adapter, backend URL
a reference to its credential (`sealed:…`, `file:<credentials folder>/edr-response.key`) and
the backend hosts it may reach.
This launcher resolves the reference here, in the child, then replaces itself with the server,
whose environment holds exactly its own URL and credential: not the key that unsealed it, not
the folder it came from. The worker that runs the model never reads the secret.

On Linux the server dies with the worker that started it (PR_SET_PDEATHSIG, kept across the
exec): a server left running after its worker was killed could still finish a write that
recovery then sends again.

`--check` starts the server in check mode: it calls the backend's health endpoint once and
prints the answer (the console's "check connection").
"""

import ctypes
import os
import signal
import sys

from toolserver.credentials import CredentialError, resolve

# What a server process may see: the basics a Python process needs, and its own backend.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH")
OWN = (
    "GATEHOUSE_SERVER", "GATEHOUSE_ADAPTER", "GATEHOUSE_BACKEND_URL", "GATEHOUSE_BACKEND_TIMEOUT_S",
    "GATEHOUSE_BACKEND_ALLOWED_HOSTS",  # egress.VARIABLE, not imported here: the launcher stays light
)


PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_VARIABLE = "GATEHOUSE_PARENT_PID"  # the worker's pid, set by the supervisor


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies; exit now if it already has."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    parent = os.environ.get(PARENT_VARIABLE)
    if parent and os.getppid() != int(parent):  # it died before the prctl: nobody would stop us
        raise SystemExit(3)


def main() -> None:
    die_with_parent()
    try:
        credential = resolve(os.environ.get("GATEHOUSE_CREDENTIAL_REF", ""))
    except CredentialError as exc:
        sys.stderr.write(f"toolserver: {os.environ.get('GATEHOUSE_SERVER', '?')}: {exc}\n")
        raise SystemExit(3) from None
    env = {name: os.environ[name] for name in PASSED_THROUGH + OWN if name in os.environ}
    env["GATEHOUSE_BACKEND_KEY"] = credential
    args = [sys.executable, "-m", "toolserver.servers", *(["--check"] if "--check" in sys.argv[1:] else [])]
    os.execve(sys.executable, args, env)  # noqa: S606 - this interpreter, a fixed module, no shell


if __name__ == "__main__":
    main()
