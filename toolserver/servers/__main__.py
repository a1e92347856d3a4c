"""`python -m toolserver.servers`: one tool server over stdio, configured by its environment.

Started by toolserver.launch, which leaves exactly these variables: GATEHOUSE_SERVER,
GATEHOUSE_ADAPTER, GATEHOUSE_BACKEND_URL, GATEHOUSE_BACKEND_KEY, GATEHOUSE_BACKEND_TIMEOUT_S,
GATEHOUSE_BACKEND_PARAMS and GATEHOUSE_BACKEND_SECRET_PARAMS (the adapter's declared parameters,
JSON objects; the secret ones unsealed by the launcher).
With `--check` it calls the backend's health endpoint once, prints {"ok", "detail"} and exits.
"""

import asyncio
import json
import logging
import os
import sys

# Before mcp's imports: a logging.basicConfig() of theirs then changes nothing. Logs go to stderr;
# stdout carries the protocol.
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")

from core.startup import collector_paused  # noqa: E402

with collector_paused():  # half a second of imports, mcp's mostly: a server answers its first call sooner
    from toolserver.adapters import adapter_class
    from toolserver.adapters.base import Backend, ParamError
    from toolserver.catalog import SERVERS
    from toolserver.servers import build_server, check_health, serve_stdio

PARAMS_VARIABLE = "GATEHOUSE_BACKEND_PARAMS"
SECRET_PARAMS_VARIABLE = "GATEHOUSE_BACKEND_SECRET_PARAMS"  # noqa: S105 - a variable name, not a secret


class CannotStart(Exception):
    """Said on stderr as `toolserver: <server>: <message>`; it names no secret."""


def backend_from(environ) -> Backend:
    """The adapter `environ` names, built with its URL, credential and parameters.

    The credential and the secret parameters are taken out of `environ` (os.environ: a process
    this one started would not inherit them).
    """
    name, adapter = environ.get("GATEHOUSE_SERVER", ""), environ.get("GATEHOUSE_ADAPTER", "")
    cls = adapter_class(name, adapter) if name in SERVERS else None
    if cls is None:
        raise CannotStart(f"unknown server or adapter {adapter!r}")
    try:
        params = {
            **_json_object(environ.get(PARAMS_VARIABLE, "")),
            **_json_object(environ.pop(SECRET_PARAMS_VARIABLE, "")),
        }
    except ValueError:
        raise CannotStart("its parameters are not a JSON object of strings") from None
    try:
        return cls(
            url=environ["GATEHOUSE_BACKEND_URL"],
            credential=environ.pop("GATEHOUSE_BACKEND_KEY", ""),
            timeout_s=float(environ.get("GATEHOUSE_BACKEND_TIMEOUT_S", "10")),
            params=params,
        )
    except ParamError as exc:
        raise CannotStart(f"adapter {adapter!r}: {exc}") from None


def _json_object(text: str) -> dict[str, str]:
    value = json.loads(text) if text else {}
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise ValueError("not a JSON object of strings")
    return value


def main() -> None:
    name = os.environ.get("GATEHOUSE_SERVER", "")
    try:
        backend = backend_from(os.environ)
    except CannotStart as exc:
        sys.stderr.write(f"toolserver: {name}: {exc}\n")
        raise SystemExit(3) from None
    if "--check" in sys.argv[1:]:
        report = asyncio.run(check_health(backend))
        print(json.dumps(report))  # noqa: T201 - --check answers on stdout
        raise SystemExit(0 if report["ok"] else 1)
    serve_stdio(build_server(SERVERS[name], backend))


if __name__ == "__main__":
    main()
