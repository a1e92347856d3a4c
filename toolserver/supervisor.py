"""One long-lived process per tool server, per worker process (spawning costs most of a second).

The supervisor owns an asyncio loop in a thread of its own; each server's stdio session is
owned by one task on it (mcp's client must be entered and left in the same task). A server
is (re)started on first use, when its process dies, and when its launch configuration changes
— a new backend URL or a rotated credential — so a rotation takes effect on the next call.
Callers are synchronous (Celery tasks) and get an envelope back, never an exception.
"""

import asyncio
import atexit
import concurrent.futures
import logging
import os
import sys
import threading
from dataclasses import dataclass

from django.conf import settings
from mcp import Client, MCPError, StdioServerParameters, stdio_client
from mcp_types import CONNECTION_CLOSED

from toolserver import credentials
from toolserver.catalog import SERVERS
from toolserver.envelope import BackendFailure, Reason, backend_error, error
from toolserver.servers import META_BACKEND_STATUS

log = logging.getLogger(__name__)
START_TIMEOUT_S = 20.0
RESTART_PAUSE_S = 1.0  # between attempts to start a server that would not start


@dataclass(frozen=True)
class LaunchConfig:
    server: str
    adapter: str
    url: str
    credential_ref: str
    credential_version: str
    timeout_s: float

    def environment(self) -> dict[str, str]:
        """What the launcher gets: where the backend is and where its credential lives."""
        return {
            "GATEHOUSE_SERVER": self.server,
            "GATEHOUSE_ADAPTER": self.adapter,
            "GATEHOUSE_BACKEND_URL": self.url,
            "GATEHOUSE_CREDENTIAL_REF": self.credential_ref,
            "GATEHOUSE_BACKEND_TIMEOUT_S": str(self.timeout_s),
        }


def launch_config(server: str) -> LaunchConfig:
    backend = settings.TOOLSERVER_BACKENDS[server]
    return LaunchConfig(
        server=server,
        adapter=backend["adapter"],
        url=backend["url"],
        credential_ref=backend["credential"],
        credential_version=credentials.version(backend["credential"]),
        timeout_s=float(settings.BACKEND_TIMEOUT_S),
    )


class ServerProcess:
    """One server's stdio session, owned by one task; restarted when the process dies."""

    def __init__(self, config: LaunchConfig):
        self.config = config
        self._client: Client | None = None
        self._ready = asyncio.Event()
        self._restart = asyncio.Event()
        self._stop = asyncio.Event()
        self._failure: str | None = None
        self._task = asyncio.create_task(self._own(), name=f"toolserver-{config.server}")

    async def _own(self) -> None:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "toolserver.launch"],
            env=self.config.environment(),
            cwd=str(settings.BASE_DIR),
        )
        while not self._stop.is_set():
            self._restart.clear()  # a restart asked for before this attempt is this attempt
            try:
                # The real stderr: a Celery worker replaces sys.stderr with a logging proxy that has no fileno.
                async with Client(stdio_client(params, errlog=sys.__stderr__)) as client:
                    self._client, self._failure = client, None
                    self._ready.set()
                    await _first(self._stop.wait(), self._restart.wait())
            except Exception as exc:  # the process would not start: say so to waiting callers
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
            return await client.call_tool(tool, arguments, read_timeout_seconds=timeout_s, meta=meta)
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

    async def stop(self) -> None:
        self._stop.set()
        self._ready.set()
        await self._task


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
        self._servers: dict[str, ServerProcess] = {}

    def call(self, server: str, tool: str, arguments: dict, meta: dict) -> tuple[dict, str]:
        """(envelope, backend status) of one call, from this worker's process for `server`."""
        timeout_s = float(settings.TOOLSERVER_CALL_TIMEOUT_S)
        config = launch_config(server)
        future = asyncio.run_coroutine_threadsafe(self._call(config, tool, arguments, meta, timeout_s), self._loop)
        try:
            return future.result(timeout=timeout_s + START_TIMEOUT_S + 5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return _unavailable(server), "toolserver_timeout"

    def list_tools(self, server: str) -> list[dict]:
        """The tools `server` itself advertises: name, description and input schema."""
        config = launch_config(server)

        async def listed():
            return await (await self._process(config)).list_tools()

        tools = asyncio.run_coroutine_threadsafe(listed(), self._loop).result(timeout=START_TIMEOUT_S + 5)
        if tools is None:
            raise RuntimeError(f"the {server} tool server did not start")
        return [{"name": tool.name, "description": tool.description, "input_schema": tool.input_schema} for tool in tools]

    async def _call(self, config: LaunchConfig, tool: str, arguments: dict, meta: dict, timeout_s: float):
        process = await self._process(config)
        backend = SERVERS[config.server].backend
        try:
            result = await process.call(tool, arguments, meta, timeout_s)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                return _unavailable(config.server), "toolserver_died"
            return backend_error(backend, BackendFailure.TIMEOUT), "toolserver_timeout"
        if result is None:
            return _unavailable(config.server), "toolserver_not_started"
        envelope = result.structured_content
        if not isinstance(envelope, dict) or envelope.get("status") not in {"ok", "error"}:
            return error(Reason.INTERNAL_ERROR, retryable=False, guidance="The tool answered out of protocol."), ""
        return envelope, str((result.meta or {}).get(META_BACKEND_STATUS, ""))

    async def _process(self, config: LaunchConfig) -> ServerProcess:
        running = self._servers.get(config.server)
        if running is not None and running.config != config:
            log.info("tool server %s: configuration changed; restarting", config.server)
            await running.stop()
            running = None
        if running is None:
            running = self._servers[config.server] = ServerProcess(config)
        return running

    def stop(self) -> None:
        async def stop_all():
            await asyncio.gather(*(process.stop() for process in self._servers.values()), return_exceptions=True)
            self._servers.clear()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(stop_all(), self._loop).result(timeout=15)


def _unavailable(server: str) -> dict:
    return error(
        Reason.TOOLSERVER_UNAVAILABLE,
        retryable=True,
        guidance=f"The {server} tool server is restarting. Retry once; this is not evidence either way.",
    )


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
