"""Start one tool server process with its own credential, and nothing else, in its environment.

The supervisor runs `python -m toolserver.launch` with the server's name, adapter, backend URL
and a reference to its credential (`file:/run/secrets/edr_isolate`). This launcher reads the
reference here, in the child, then replaces itself with the server, whose environment holds
exactly its own URL and credential: the worker that runs the model never reads the secret.
"""

import os
import sys

from toolserver.credentials import CredentialError, resolve

# What a server process may see: the basics a Python process needs, and its own backend.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH")
OWN = ("GATEHOUSE_SERVER", "GATEHOUSE_ADAPTER", "GATEHOUSE_BACKEND_URL", "GATEHOUSE_BACKEND_TIMEOUT_S")


def main() -> None:
    try:
        credential = resolve(os.environ.get("GATEHOUSE_CREDENTIAL_REF", ""))
    except CredentialError as exc:
        sys.stderr.write(f"toolserver: {os.environ.get('GATEHOUSE_SERVER', '?')}: {exc}\n")
        raise SystemExit(3) from None
    env = {name: os.environ[name] for name in PASSED_THROUGH + OWN if name in os.environ}
    env["GATEHOUSE_BACKEND_KEY"] = credential
    os.execve(sys.executable, [sys.executable, "-m", "toolserver.servers"], env)


if __name__ == "__main__":
    main()
