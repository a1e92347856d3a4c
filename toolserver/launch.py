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
An external server's launcher does not exec: it stays as a thin relay parent (relay()), the only
other process holding the credential, and replaces the credential in every line the server answers
(toolserver.redaction), so a server that echoes its key never hands it to the worker, the audit
trail or the model.

`--check` starts the server in check mode: it calls the backend's health endpoint once and
prints the answer (the console's "check connection").
"""

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading

from toolserver.credentials import KEY_VARIABLE, CredentialError, resolve, unseal
from toolserver.redaction import Redactor

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
# One line an external server writes, at most: far past what a call's answer may hold for the model (20,000
# characters; an image only summarised), and a bound on what a hostile server makes the worker read and join.
MAX_LINE_BYTES = 8 * 1024 * 1024
LOG_DRAIN_S = 5

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_VARIABLE = "GATEHOUSE_PARENT_PID"  # the worker's pid, set by the supervisor


def die_with_parent(parent: str | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies; exit now if it already has."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    parent = parent or os.environ.get(PARENT_VARIABLE)
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


def external_launch(environ) -> tuple[list[str], dict[str, str], str, str]:
    """(argv, environment, working directory, credential) of an external server: PATH, its own variables,
    its credential (returned too: the relay redacts it).

    Raises CredentialError (naming a reference, never a secret).
    """
    spec = json.loads(environ[EXTERNAL_VARIABLE])
    if spec.get("transport") == "http":  # the bridge (toolserver.bridge) holds the credential, as a header
        env = {
            name: environ[name] for name in ("PATH", "PYTHONPATH", "GATEHOUSE_BACKEND_ALLOWED_HOSTS") if name in environ
        }
        env |= {"GATEHOUSE_BRIDGE_URL": spec["url"], "GATEHOUSE_BRIDGE_HEADER": spec.get("credential_header") or ""}
        secret = ""
        if spec.get("credential_header"):
            secret = env["GATEHOUSE_BRIDGE_SECRET"] = resolve(environ.get("GATEHOUSE_CREDENTIAL_REF", ""), environ)
        return [sys.executable, "-m", "toolserver.bridge"], env, "", secret
    env = {"PATH": environ.get("PATH", os.defpath)}
    env.update({str(name): str(value) for name, value in (spec.get("env") or {}).items()})
    secret = ""
    if spec.get("credential_env"):
        secret = env[spec["credential_env"]] = resolve(environ.get("GATEHOUSE_CREDENTIAL_REF", ""), environ)
    argv = [spec["command"], *[str(arg) for arg in spec.get("args") or []]]
    return argv, env, spec.get("cwd") or "", secret


def relay(argv: list[str], env: dict[str, str], cwd: str, secret: str) -> int:
    """Run the external server as a child and relay its stdio, its credential redacted in every line it writes.

    Line-delimited JSON-RPC: each line of its stdout (and of its stderr, the worker's log) is redacted
    whole; nothing is parsed. The child dies with this relay (PR_SET_PDEATHSIG) and gets the signals
    it is sent; the supervisor's stop (stdin closed, then the process group killed) stops both.
    Returns the child's exit status.
    """
    redact = Redactor(secret)
    relay_pid = str(os.getpid())
    child = subprocess.Popen(  # noqa: S603 - the admin's registered command, no shell
        argv,
        env=env,
        cwd=cwd or None,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: die_with_parent(relay_pid),  # before any thread starts
    )
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda signum, _frame: child.send_signal(signum))
    stdin, stdout, stderr = child.stdin, child.stdout, child.stderr
    assert stdin and stdout and stderr  # noqa: S101 - opened as pipes above

    def copy_stdin() -> None:  # the worker's requests: it never held the credential, so nothing to redact
        # OSError: the child has gone; its stdout ends, and so does the relay.
        with contextlib.suppress(OSError), stdin:
            while chunk := os.read(0, 65536):
                stdin.write(chunk)
                stdin.flush()

    def copy_lines(source, target, *, log: bool) -> None:
        """Each line redacted whole. One over MAX_LINE_BYTES is never read whole: a log line is left out
        (cut, a secret in it could straddle the cut), a message stops the server (MessageTooLong)."""
        while line := source.readline(MAX_LINE_BYTES + 1):
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                if not log:
                    raise MessageTooLong
                while (rest := source.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
                line = b"toolserver: a line of its log over the relay's limit, left out\n"
            target.write(redact(line))
            target.flush()

    threading.Thread(target=copy_stdin, daemon=True).start()
    log_copier = threading.Thread(
        target=copy_lines, args=(stderr, sys.stderr.buffer), kwargs={"log": True}, daemon=True
    )
    log_copier.start()
    try:
        copy_lines(stdout, sys.stdout.buffer, log=False)
    except BrokenPipeError:  # the worker stopped reading: stop the server
        child.terminate()
    except MessageTooLong:  # the worker's call fails (its server gone); the supervisor starts it again
        sys.stderr.write(f"toolserver: a message of its server over {MAX_LINE_BYTES} bytes: server stopped\n")
        child.kill()
    status = child.wait()
    log_copier.join(timeout=LOG_DRAIN_S)  # the last of its log, relayed (a process it left may hold the pipe)
    return status


class MessageTooLong(Exception):
    """An external server wrote a message longer than MAX_LINE_BYTES."""


def main() -> None:
    die_with_parent()
    if EXTERNAL_VARIABLE in os.environ:
        if "--check" in sys.argv[1:]:  # check mode is for our servers: never run an admin's command for it
            sys.stderr.write(
                f"toolserver: {os.environ.get('GATEHOUSE_SERVER', '?')}: an external server has no check mode\n"
            )
            raise SystemExit(3)
        try:
            argv, env, cwd, secret = external_launch(os.environ)
            status = relay(argv, env, cwd, secret)
        except (CredentialError, OSError) as exc:
            sys.stderr.write(f"toolserver: {os.environ.get('GATEHOUSE_SERVER', '?')}: {exc}\n")
            raise SystemExit(3) from None
        raise SystemExit(status)
    try:
        env = server_environment(os.environ)
    except CredentialError as exc:
        sys.stderr.write(f"toolserver: {os.environ.get('GATEHOUSE_SERVER', '?')}: {exc}\n")
        raise SystemExit(3) from None
    args = [sys.executable, "-m", "toolserver.servers", *(["--check"] if "--check" in sys.argv[1:] else [])]
    os.execve(sys.executable, args, env)  # noqa: S606 - this interpreter, a fixed module, no shell


if __name__ == "__main__":
    main()
