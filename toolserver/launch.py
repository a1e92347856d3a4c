"""Start one tool server process with its own credential, and nothing else, in its environment.

The supervisor runs `python -m toolserver.launch` with the server's name, adapter, backend URL
a reference to its credential (`sealed:…`, `file:<credentials folder>/edr-response.key`) and
the backend hosts it may reach, and its adapter's parameters: the plain ones (a JSON object) and
the secret ones, each sealed like a credential.
This launcher resolves the reference and unseals the secret parameters here, in the child, then
replaces itself with the server, whose environment holds exactly its own URL, credential and
parameters: not the key that unsealed them, not the folder it came from. The worker that runs the
model never reads a secret.

On Linux the server dies with the worker that started it (PR_SET_PDEATHSIG, kept across the
exec): a server left running after its worker was killed could still finish a write that
recovery then sends again.

An external server (toolserver.external) starts the same way, but the launcher then runs the
server's own command (GATEHOUSE_EXTERNAL: command, args, cwd, env, credential_env) with an
environment of exactly PATH, the variables the admin allow-listed for it, and its credential under
the variable it expects: nothing of Gatehouse's, not even the variables built-in servers get.
A Streamable HTTP one runs toolserver.bridge instead, with its URL, its allow-list and its
credential for the header it expects.

`--check` starts the server in check mode: it calls the backend's health endpoint once and
prints the answer (the console's "check connection").
"""

import ctypes
import json
import os
import signal
import sys

from toolserver.credentials import KEY_VARIABLE, CredentialError, resolve, unseal

# What a server process may see: the basics a Python process needs, and its own backend.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH")
OWN = (
    "GATEHOUSE_SERVER",
    "GATEHOUSE_ADAPTER",
    "GATEHOUSE_BACKEND_URL",
    "GATEHOUSE_BACKEND_TIMEOUT_S",
    "GATEHOUSE_BACKEND_ALLOWED_HOSTS",  # egress.VARIABLE, not imported here: the launcher stays light
    "GATEHOUSE_BACKEND_PARAMS",
)
SEALED_PARAMS_VARIABLE = "GATEHOUSE_SEALED_PARAMS"  # {name: Fernet token}, set by the supervisor
SECRET_PARAMS_VARIABLE = "GATEHOUSE_BACKEND_SECRET_PARAMS"  # noqa: S105 - a variable name. {name: value}, what the server gets


EXTERNAL_VARIABLE = "GATEHOUSE_EXTERNAL"  # an external server's launch, as JSON (toolserver.external)

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


def server_environment(environ) -> dict[str, str]:
    """The server's whole environment: its own variables, its credential and its parameters resolved.

    Raises CredentialError (naming a reference or a parameter, never a secret).
    """
    credential = resolve(environ.get("GATEHOUSE_CREDENTIAL_REF", ""), environ)
    env = {name: environ[name] for name in PASSED_THROUGH + OWN if name in environ}
    env["GATEHOUSE_BACKEND_KEY"] = credential
    sealed = environ.get(SEALED_PARAMS_VARIABLE, "")
    if sealed:
        try:
            tokens = json.loads(sealed)
        except ValueError:
            tokens = None
        if not isinstance(tokens, dict):
            raise CredentialError("the sealed parameters are not a JSON object")
        secrets = {}
        for name, token in tokens.items():
            try:
                secrets[name] = unseal(str(token), environ.get(KEY_VARIABLE, ""))
            except CredentialError:
                raise CredentialError(f"the secret parameter {name!r} does not open with {KEY_VARIABLE}") from None
        env[SECRET_PARAMS_VARIABLE] = json.dumps(secrets)
    return env


def external_launch(environ) -> tuple[list[str], dict[str, str], str]:
    """(argv, environment, working directory) of an external server: PATH, its own variables, its credential.

    Raises CredentialError (naming a reference, never a secret).
    """
    spec = json.loads(environ[EXTERNAL_VARIABLE])
    if spec.get("transport") == "http":  # the bridge (toolserver.bridge) holds the credential, as a header
        env = {
            name: environ[name] for name in ("PATH", "PYTHONPATH", "GATEHOUSE_BACKEND_ALLOWED_HOSTS") if name in environ
        }
        env |= {"GATEHOUSE_BRIDGE_URL": spec["url"], "GATEHOUSE_BRIDGE_HEADER": spec.get("credential_header") or ""}
        if spec.get("credential_header"):
            env["GATEHOUSE_BRIDGE_SECRET"] = resolve(environ.get("GATEHOUSE_CREDENTIAL_REF", ""), environ)
        return [sys.executable, "-m", "toolserver.bridge"], env, ""
    env = {"PATH": environ.get("PATH", os.defpath)}
    env.update({str(name): str(value) for name, value in (spec.get("env") or {}).items()})
    if spec.get("credential_env"):
        env[spec["credential_env"]] = resolve(environ.get("GATEHOUSE_CREDENTIAL_REF", ""), environ)
    return [spec["command"], *[str(arg) for arg in spec.get("args") or []]], env, spec.get("cwd") or ""


def main() -> None:
    die_with_parent()
    if EXTERNAL_VARIABLE in os.environ:
        try:
            argv, env, cwd = external_launch(os.environ)
            if cwd:
                os.chdir(cwd)
        except (CredentialError, OSError) as exc:
            sys.stderr.write(f"toolserver: {os.environ.get('GATEHOUSE_SERVER', '?')}: {exc}\n")
            raise SystemExit(3) from None
        os.execvpe(argv[0], argv, env)  # noqa: S606 - the admin's registered command, no shell
    try:
        env = server_environment(os.environ)
    except CredentialError as exc:
        sys.stderr.write(f"toolserver: {os.environ.get('GATEHOUSE_SERVER', '?')}: {exc}\n")
        raise SystemExit(3) from None
    args = [sys.executable, "-m", "toolserver.servers", *(["--check"] if "--check" in sys.argv[1:] else [])]
    os.execve(sys.executable, args, env)  # noqa: S606 - this interpreter, a fixed module, no shell


if __name__ == "__main__":
    main()
