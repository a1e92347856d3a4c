"""One long-lived process per tool server, per worker process (spawning costs most of a second).

The supervisor owns an asyncio loop in a thread of its own; each server's stdio session is
owned by one task on it (mcp's client must be entered and left in the same task). A worker
starts its servers as it starts (warm(), from console.celery.warm_worker). A server is (re)started
on first use, when its process dies, and when its launch configuration (toolserver.config:
adapter, URL, parameters, credential) differs from the one it was started with, so no call ever
runs on an old credential. An admin's change also stops the old processes at once,
in every worker: restart_everywhere() (over Redis pub/sub in production).
Callers are synchronous (Celery tasks) and get an envelope back, never an exception.
"""

import asyncio
import atexit
import concurrent.futures
import json
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from django.conf import settings

from core.db import release_connection
from toolserver import credentials, egress, external
from toolserver.catalog import SERVERS
from toolserver.config import BackendBinding, binding_of
from toolserver.envelope import BackendFailure, Reason, backend_error, error
from toolserver.launch import EXTERNAL_VARIABLE, PARENT_VARIABLE, SEALED_PARAMS_VARIABLE
from toolserver.meta import META_BACKEND_STATUS, META_REFUSED, SERVER_REQUESTS

if TYPE_CHECKING:  # mcp is imported when the first server starts: a web process may never need it
    from mcp import Client

log = logging.getLogger(__name__)
START_TIMEOUT_S = 20.0
OUT_OF_SCHEMA = -32603  # JSON-RPC internal error: an answer that breaks the tool's declared outputSchema
RESTART_PAUSE_S = 1.0  # between attempts to start a server that would not start


@dataclass(frozen=True)
class LaunchConfig:
    server: str
    adapter: str
    url: str
    credential_ref: str
    credential_version: str
    credentials_dir: str
    allowed_hosts: str
    timeout_s: float
    params: str = "{}"
    sealed_params: str = ""
    external: str = ""  # an external server's launch (toolserver.launch runs its command instead of ours)

    @cached_property
    def transport(self) -> str:
        """An external server's transport ("stdio", "http"), read once, not at each of its calls."""
        return json.loads(self.external).get("transport", "") if self.external else ""

    def environment(self) -> dict[str, str]:
        """What the launcher gets: where the backend is, where its credential lives, where it may
        connect, and its adapter's parameters (the secret ones sealed).

        A sealed credential or parameter comes with the key that opens it; the launcher does not hand it on to
        the server (toolserver.launch).
        """
        env = {
            "GATEHOUSE_SERVER": self.server,
            "GATEHOUSE_ADAPTER": self.adapter,
            "GATEHOUSE_BACKEND_URL": self.url,
            "GATEHOUSE_CREDENTIAL_REF": self.credential_ref,
            credentials.DIR_VARIABLE: self.credentials_dir,
            egress.VARIABLE: self.allowed_hosts,
            "GATEHOUSE_BACKEND_TIMEOUT_S": str(self.timeout_s),
            "GATEHOUSE_BACKEND_PARAMS": self.params,
        }
        if self.sealed_params:
            env[SEALED_PARAMS_VARIABLE] = self.sealed_params
        if self.external:
            env[EXTERNAL_VARIABLE] = self.external
        if self.credential_ref.startswith("sealed:") or self.sealed_params:
            env[credentials.KEY_VARIABLE] = settings.CREDENTIALS_KEY
        return env


def launch_config(server: str, backend: BackendBinding | None = None) -> LaunchConfig:
    backend = backend or binding_of(server)
    return LaunchConfig(
        server=server,
        adapter=backend.adapter,
        url=backend.url,
        credential_ref=backend.credential_ref,
        credential_version=credentials.version(backend.credential_ref),
        credentials_dir=str(settings.CREDENTIALS_DIR),
        allowed_hosts=",".join(allowed_backend_hosts(server)),
        timeout_s=backend.timeout_s or float(settings.BACKEND_TIMEOUT_S),
        params=backend.params,
        sealed_params=backend.sealed_params,
        external=backend.external,
    )


def allowed_backend_hosts(server: str) -> list[str]:
    """The deployment's allow-list, and the host of the server's own default backend (the
    deployment named it in TOOLSERVER_BACKENDS: the lab, on the embedded default)."""
    if server not in settings.TOOLSERVER_BACKENDS:  # an external server: the deployment's list only
        return list(settings.BACKEND_ALLOWED_HOSTS)
    default = urlsplit(settings.TOOLSERVER_BACKENDS[server]["url"])
    own = f"[{default.hostname}]" if ":" in (default.hostname or "") else default.hostname
    port = default.port or (443 if default.scheme == "https" else 80)
    return [*settings.BACKEND_ALLOWED_HOSTS, f"{own}:{port}"] if own else list(settings.BACKEND_ALLOWED_HOSTS)


class ServerDidNotStart(RuntimeError):
    """Its message names the server, never its credential."""


class ServerProcess:
    """One server's stdio session, owned by one task; restarted when the process dies."""

    def __init__(self, config: LaunchConfig):
        self.config = config
        self._client: Client | None = None
        self._ready = asyncio.Event()
        self._restart = asyncio.Event()
        self._stop = asyncio.Event()
        self._failure: str | None = None
        self.refused: list[str] = []  # what an external server asked of us and was refused, since the last answer
        self._task = asyncio.create_task(self._own(), name=f"toolserver-{config.server}")

    def _callbacks(self) -> dict:
        """An external server's requests back to us (sampling, elicitation, roots) are refused, and the
        refusal is recorded with the call it came during (Supervisor._call_external). Declaring them is
        what makes a server ask instead of silently doing without."""
        if not self.config.external:
            return {}

        import mcp_types

        def refuse(what: str):
            async def refused(*_args, **_kwargs) -> mcp_types.ErrorData:
                log.warning("tool server %s asked for %s: refused", self.config.server, what)
                self.refused.append(what)
                return mcp_types.ErrorData(code=mcp_types.INVALID_REQUEST, message=f"Gatehouse does not serve {what}")

            return refused

        return {
            "sampling_callback": refuse("sampling"),
            "elicitation_callback": refuse("elicitation"),
            "list_roots_callback": refuse("roots"),
        }

    async def _own(self) -> None:
        from mcp import Client, StdioServerParameters, stdio_client

        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "toolserver.launch"],
            # The launcher checks that this process is still its parent after it asked to die with it.
            env=self.config.environment() | {PARENT_VARIABLE: str(os.getpid())},
            cwd=str(settings.BASE_DIR),
        )
        while not self._stop.is_set():
            self._restart.clear()  # a restart asked for before this attempt is this attempt
            try:
                # The real stderr: a Celery worker replaces sys.stderr with a logging proxy that has no fileno.
                errlog = sys.__stderr__ if sys.__stderr__ is not None else sys.stderr
                async with Client(stdio_client(params, errlog=errlog), **self._callbacks()) as client:
                    self._client, self._failure = client, None
                    self._ready.set()
                    await _first(self._stop.wait(), self._restart.wait())
            except Exception as exc:  # noqa: BLE001 - the process would not start: say so to waiting callers
                log.warning("tool server %s did not start (%s)", self.config.server, type(exc).__name__)
                self._failure = type(exc).__name__
                self._ready.set()
                await _first(self._stop.wait(), self._restart.wait())
                await asyncio.sleep(RESTART_PAUSE_S)  # callers keep asking; the next try waits a moment
            finally:
                self._client = None
                if not self._stop.is_set():
                    self._ready.clear()

    async def call(self, tool: str, arguments: dict, meta: dict, timeout_s: float):
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, RequestParamsMeta

        try:
            await asyncio.wait_for(self._ready.wait(), START_TIMEOUT_S)
        except TimeoutError:
            return None
        client = self._client
        if client is None:  # failed to start: try again on the next call
            self._ready.clear()
            self._restart.set()
            return None
        try:
            # An open map (extra_items=Any): the gatehouse/* keys are its extra items, as mcp casts them itself.
            meta_sent = cast(RequestParamsMeta, meta)
            return await client.call_tool(tool, arguments, read_timeout_seconds=timeout_s, meta=meta_sent)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED and client is self._client:
                log.warning("tool server %s died; restarting", self.config.server)
                self._ready.clear()
                self._restart.set()
            raise

    async def list_tools(self) -> list | None:
        try:
            await asyncio.wait_for(self._ready.wait(), START_TIMEOUT_S)
        except TimeoutError:
            return None
        if self._client is None:
            return None
        return (await self._client.list_tools()).tools

    @property
    def started(self) -> bool:
        return self._client is not None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def stop(self) -> None:
        self._stop.set()
        self._ready.set()
        await self._task


def _out_of_protocol() -> dict:
    return error(Reason.INTERNAL_ERROR, retryable=False, guidance="The tool answered out of protocol.")


async def _first(*waits) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()


class Supervisor:
    def __init__(self):
        self.pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="toolserver-supervisor", daemon=True)
        self._thread.start()
        import mcp  # noqa: F401  here, before the loop's thread imports it in a task (as redis.asyncio below)

        self._servers: dict[str, ServerProcess] = {}
        self._listener = None
        if settings.REDIS_URL:
            import redis.asyncio  # noqa: F401  here, not first in the loop's thread: two threads importing it at once deadlock

            self._listener = asyncio.run_coroutine_threadsafe(self._listen_for_restarts(settings.REDIS_URL), self._loop)

    def call(self, server: str, tool: str, arguments: dict, meta: dict, backend=None) -> tuple[dict, str]:
        """(envelope, backend status) of one call, from this worker's process for `server`."""
        config = launch_config(server, backend)
        timeout_s = config.timeout_s if config.external else float(settings.TOOLSERVER_CALL_TIMEOUT_S)
        release_connection()  # the answer may take seconds: the caller holds no database connection meanwhile
        future = asyncio.run_coroutine_threadsafe(self._call(config, tool, arguments, meta, timeout_s), self._loop)
        try:
            return future.result(timeout=timeout_s + START_TIMEOUT_S + 5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return (
                external.failure(server, "timeout") if config.external else _unavailable(server)
            ), "toolserver_timeout"

    def list_tools(self, server: str, *, keep_running: bool = True) -> list[dict]:
        """The tools `server` itself advertises: name, description and input schema.

        keep_running=False asks a process started for the question and stopped after it, so a
        web process that discovers tools keeps no server (nor credential) running.
        """
        config = launch_config(server)

        async def listed():
            if keep_running:
                return await (await self._process(config)).list_tools()
            process = ServerProcess(config)
            try:
                return await process.list_tools()
            finally:
                await process.stop()

        tools = asyncio.run_coroutine_threadsafe(listed(), self._loop).result(timeout=START_TIMEOUT_S + 5)
        if tools is None:
            raise ServerDidNotStart(f"the {server} tool server did not start (is its credential set?)")
        return [
            {
                "name": tool.name,
                "description": tool.description,
                "input_schema": tool.input_schema,
                "output_schema": tool.output_schema,
                "annotations": tool.annotations.model_dump(by_alias=True, exclude_none=True)
                if tool.annotations
                else {},
            }
            for tool in tools
        ]

    def warm(self) -> list[str]:
        """Start every enabled server that has a credential, and list its tools: the first investigation
        then finds them running. Blocks until each has started or failed (call it from a thread of its own);
        returns the servers running. One that did not start is logged by name; its first call tries again."""
        from toolserver.models import ToolServer

        rows = ToolServer.objects.select_related("credential").filter(enabled=True, name__in=SERVERS)
        configs = [
            config for config in (launch_config(row.name, binding_of(row)) for row in rows) if config.credential_ref
        ]

        async def started(config: LaunchConfig) -> bool:
            return await (await self._process(config)).list_tools() is not None

        async def start_all() -> list:
            return await asyncio.gather(*(started(config) for config in configs), return_exceptions=True)

        answers = asyncio.run_coroutine_threadsafe(start_all(), self._loop).result(timeout=START_TIMEOUT_S + 5)
        running = [config.server for config, ok in zip(configs, answers, strict=True) if ok is True]
        log.info("tool servers warm: %s", ", ".join(running) or "none")
        return running

    def running(self) -> list[str]:
        """The servers with a live session in this process now."""
        return sorted(name for name, process in self._servers.items() if process.started)

    def restart(self, server: str) -> None:
        """Stop this process's `server` now: it starts again, with its current configuration, on its next call."""
        asyncio.run_coroutine_threadsafe(self._stop_server(server), self._loop).result(timeout=15)

    async def _stop_server(self, server: str) -> None:
        running = self._servers.get(server)
        if running is not None:  # a second caller (the announcement and the local call) awaits the same stop
            await running.stop()
            if self._servers.get(server) is running:
                del self._servers[server]
                log.info("tool server %s: stopped (its configuration changed)", server)

    async def _listen_for_restarts(self, url: str) -> None:
        """Production: a credential rotated in the web process stops every worker's server that holds the old one."""
        import redis.asyncio as aioredis

        while True:
            client = aioredis.Redis.from_url(url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(restart_channel(url))
                    async for message in pubsub.listen():
                        if message["type"] == "message" and external.SERVER_NAME.match(message["data"].decode()):
                            await self._stop_server(message["data"].decode())
            except Exception as exc:  # noqa: BLE001 - Redis away: calls still compare their configuration; listen again soon
                log.warning("tool server restarts: not listening (%s)", type(exc).__name__)
                await asyncio.sleep(RESTART_PAUSE_S * 5)
            finally:
                await client.aclose()

    async def _call(self, config: LaunchConfig, tool: str, arguments: dict, meta: dict, timeout_s: float):
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED

        process = await self._process(config)
        if config.external:
            return await self._call_external(process, tool, arguments, timeout_s)
        backend = SERVERS[config.server].backend
        try:
            result = await process.call(tool, arguments, meta, timeout_s)
        except MCPError as exc:
            _relayed_refusals(process, exc.data)
            if exc.code == CONNECTION_CLOSED:
                return _unavailable(config.server), "toolserver_died"
            return backend_error(backend, BackendFailure.TIMEOUT), "toolserver_timeout"
        except RuntimeError:  # mcp's client checks a result against the tool's outputSchema, and raises
            return _out_of_protocol(), ""
        if result is None:
            return _unavailable(config.server), "toolserver_not_started"
        envelope = result.structured_content
        if not isinstance(envelope, dict) or envelope.get("status") not in {"ok", "error"}:
            return _out_of_protocol(), ""
        return envelope, str((result.meta or {}).get(META_BACKEND_STATUS, ""))

    async def _call_external(self, process: "ServerProcess", tool: str, arguments: dict, timeout_s: float):
        """An external server's answer as the one envelope; its failures typed with its name.

        It gets no _meta of ours: the investigation and the alert are not a third party's business."""
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        server = process.config.server
        try:
            result = await process.call(tool, arguments, {}, timeout_s)
        except MCPError as exc:
            _relayed_refusals(process, exc.data)
            if exc.code == CONNECTION_CLOSED:
                return external.failure(server, "unavailable"), "toolserver_died"
            if exc.code == REQUEST_TIMEOUT:
                return external.failure(server, "timeout"), "toolserver_timeout"
            return external.normalise_protocol_error(server, exc.code), _status(process, f"mcp_error {exc.code}")
        except RuntimeError:  # mcp's client found the answer out of the tool's own outputSchema
            return external.normalise_protocol_error(server, OUT_OF_SCHEMA), _status(process, "out_of_schema")
        if result is None:
            return external.failure(server, "unavailable"), "toolserver_not_started"
        _relayed_refusals(process, result.meta)
        return external.normalise(server, result), _status(process, "is_error" if result.is_error else "ok")

    async def _process(self, config: LaunchConfig) -> ServerProcess:
        running = self._servers.get(config.server)
        if running is not None and not running.stopping and running.config != config:
            log.info("tool server %s: configuration changed; restarting", config.server)
            await running.stop()
            running = self._servers.get(config.server)  # another caller may have started the new one meanwhile
        # A process being stopped is never handed out: its session may already be closed.
        if running is None or running.stopping:
            running = self._servers[config.server] = ServerProcess(config)
        return running

    def stop(self) -> None:
        async def stop_all():
            await asyncio.gather(*(process.stop() for process in self._servers.values()), return_exceptions=True)
            self._servers.clear()

        if self._listener is not None:
            self._listener.cancel()  # its task ends (and closes its connection) on the loop, before the loop stops

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(stop_all(), self._loop).result(timeout=15)


def _relayed_refusals(process: ServerProcess, carried) -> None:
    """What an HTTP server's bridge refused, sent with the call's answer (its _meta) or its error (its data)."""
    relayed = carried.get(META_REFUSED) if process.config.transport == "http" and isinstance(carried, dict) else None
    process.refused += [what for what in relayed if what in SERVER_REQUESTS] if isinstance(relayed, list) else []


def _status(process: ServerProcess, status: str) -> str:
    """The backend status an external call's audit record keeps: the requests to us refused since the
    last call's (those it made as it started go with its first call), taken so no later call repeats them."""
    refused = sorted(set(process.refused))
    process.refused.clear()
    return (f"refused:{'+'.join(refused)} " if refused else "") + status


def _unavailable(server: str) -> dict:
    return error(
        Reason.TOOLSERVER_UNAVAILABLE,
        retryable=True,
        guidance=f"The {server} tool server is restarting. Retry once; this is not evidence either way.",
    )


def restart_channel(redis_url: str) -> str:
    """Pub/sub ignores Redis database numbers: the channel names the database, so deployments sharing a Redis stay apart."""
    return f"gatehouse:{urlsplit(redis_url).path.strip('/') or '0'}:toolserver-restart"


def restart_everywhere(server: str) -> None:
    """After a change of `server`'s backend or credential: every process stops its old server process now."""
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=3, socket_connect_timeout=3)
        try:
            client.publish(restart_channel(settings.REDIS_URL), server)
        except redis.RedisError as exc:  # each call still compares its configuration: none uses the old one
            log.warning("tool server %s: restart not announced (%s)", server, type(exc).__name__)
        finally:
            client.close()
    if _supervisor is not None and _supervisor.pid == os.getpid():
        _supervisor.restart(server)


def check_connection(server: str) -> dict:
    """{"ok", "detail"}: the backend's health endpoint, called with the credential by a process of the server's own.

    The launcher resolves the credential as for a real start, so a wrong reference, a key the
    backend refuses and an unreachable URL each show here, named, before an investigation meets them.
    An external server has no health endpoint of ours: it is started as a worker starts it and asked
    for its tools (never run in this process's check mode).
    """
    from mcp.client.stdio import get_default_environment

    config = launch_config(server)
    if config.external:
        try:
            listed = get_supervisor().list_tools(server, keep_running=False)
        except ServerDidNotStart as exc:
            return {"ok": False, "detail": str(exc)}
        return {"ok": True, "detail": f"started; it lists {len(listed)} tools"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "toolserver.launch", "--check"],
            env=get_default_environment() | config.environment(),
            cwd=str(settings.BASE_DIR),
            capture_output=True,
            text=True,
            timeout=config.timeout_s + START_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "detail": f"no answer within {config.timeout_s + START_TIMEOUT_S:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode in (0, 1) and lines:
        try:
            return json.loads(lines[-1])
        except ValueError:
            pass
    # Only the launcher's own line (it names a reference, never a secret); anything else the
    # process printed could quote what it was given, so the page gets the exit status instead.
    ours = [line for line in done.stderr.splitlines() if line.startswith(f"toolserver: {server}: ")]
    if ours:
        return {"ok": False, "detail": ours[-1].removeprefix(f"toolserver: {server}: ")}
    return {"ok": False, "detail": f"the check process failed (exit status {done.returncode}); the worker log says why"}


def warm_tool_servers() -> None:
    """A worker that starts: its tool servers start now, not in its first investigation. Blocks (a
    thread of its own calls it); never raises: whatever did not start, the first call starts."""
    from django.db import connection

    try:
        get_supervisor().warm()
    except Exception as exc:  # noqa: BLE001 - the first calls start them instead
        log.warning("tool servers not warmed (%s)", type(exc).__name__)
    finally:
        connection.close()  # this thread's own


_supervisor: Supervisor | None = None
_lock = threading.Lock()


def get_supervisor() -> Supervisor:
    """This process's supervisor; a forked worker process gets its own."""
    global _supervisor
    with _lock:
        if _supervisor is None or _supervisor.pid != os.getpid():
            _supervisor = Supervisor()
            atexit.register(_supervisor.stop)
        return _supervisor
