"""The MCP servers, one per capability (catalog.SERVERS), each run as its own process.

build_server() turns a ServerSpec and its backend adapter into an mcp low-level Server that
serves tools and nothing else: its capabilities say so, and any other method (prompts, resources)
is "method not found". Each tool validates the raw wire arguments itself, strictly, and every
outcome leaves as the one envelope or a typed error (its outputSchema): never a raw payload, a
stack trace or a credential. serverInfo carries Gatehouse's version.
"""

import json
import logging
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

import anyio
import pydantic_core
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp_types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
    ToolAnnotations,
)
from pydantic import ValidationError

from core.inputs import each_string
from toolserver.adapters.base import (
    Backend,
    BackendError,
    BackendRefused,
    CannotTell,
    Page,
    TargetNotFound,
    WriteContext,
)
from toolserver.catalog import ServerSpec, ToolSpec
from toolserver.egress import EgressRefused
from toolserver.envelope import (
    BACKEND_NAMES,
    OUTPUT_SCHEMA,
    BackendFailure,
    Reason,
    backend_error,
    error,
    invalid_arguments,
    is_error,
    ok,
)
from toolserver.meta import (  # the _meta keys; named here too, for the server's tests
    META_BACKEND_STATUS,
    META_CHECK_DONE,
    META_CORRELATION,
    META_IDEMPOTENCY_KEY,
    META_TRIGGER,
)
from toolserver.schemas import parse_arguments

log = logging.getLogger("toolserver")


def build_server(spec: ServerSpec, backend: Backend) -> Server:
    listed = ListToolsResult(tools=[_listing(tool) for tool in spec.tools])

    async def list_tools(ctx: ServerRequestContext, params: PaginatedRequestParams | None) -> ListToolsResult:
        return listed

    async def call_tool(ctx: ServerRequestContext, params: CallToolRequestParams) -> CallToolResult:
        tool = spec.tool(params.name)
        if tool is None:  # JSON-RPC's answer to a tool nobody listed (the MCP spec's own example)
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name}")
        raw = (ctx.params or {}).get("arguments") or {}  # as sent: parse_arguments checks it strictly
        envelope, backend_status = await run_tool(spec, tool, backend, raw, dict(ctx.meta or {}))
        return _result(envelope, backend_status)

    return Server(
        f"gatehouse-{spec.name}",
        version=version("gatehouse"),
        instructions=spec.description,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def serve_stdio(server: Server) -> None:
    async def serve() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(serve)


def _listing(tool: ToolSpec) -> Tool:
    return Tool(
        name=tool.name,
        description=tool.description,
        input_schema=tool.input_schema(),
        output_schema=OUTPUT_SCHEMA,
        annotations=ToolAnnotations(
            read_only_hint=not tool.write,
            destructive_hint=tool.destructive,  # the catalog's word: opening a ticket only adds
            idempotent_hint=True,  # a write's idempotency key makes a repeat return the first result
            open_world_hint=False,
        ),
    )


async def run_tool(spec: ServerSpec, tool: ToolSpec, backend: Backend, raw: Any, meta: dict) -> tuple[dict, str]:
    """One call, start to end: (envelope, backend status). Never raises.

    Every form of the backend's secrets is redacted from the whole envelope: a backend's refusal
    or data may quote the credential it was sent (architecture rule 2)."""
    envelope, backend_status = await _run(spec, tool, backend, raw, meta)
    return each_string(envelope, backend.redactor().text), backend_status


async def _run(spec: ServerSpec, tool: ToolSpec, backend: Backend, raw: Any, meta: dict) -> tuple[dict, str]:
    try:
        args = parse_arguments(tool.arguments, raw)
    except ValidationError as exc:
        return invalid_arguments(exc), ""
    handler = getattr(backend, tool.name)
    try:
        if tool.write:
            key = meta.get(META_IDEMPOTENCY_KEY) or ""
            trigger = meta.get(META_TRIGGER) or ""
            if not key or not trigger:
                return error(
                    Reason.INVALID_ARGUMENTS,
                    retryable=False,
                    guidance="A write must come through the Gatehouse gateway, with its idempotency key.",
                ), ""
            write = WriteContext(key, trigger, meta.get(META_CORRELATION) or "")
            if meta.get(META_CHECK_DONE):
                return ok(await _check_done(backend, tool, args, write), source=backend.source), "checked"
            outcome = await handler(args, write)
        else:
            outcome = await handler(args)
    except BackendError as exc:
        return backend_error(spec.backend, exc.failure, retry_after_s=exc.retry_after_s, vendor=backend.vendor), str(
            exc.status or exc.failure
        )
    except TargetNotFound as exc:
        return error(
            Reason.NOT_FOUND,
            retryable=False,
            guidance=f"The {BACKEND_NAMES.get(spec.backend, spec.backend)} has no {exc.target!r}. "
            "Check the name against the alert; do not guess.",
        ), "404"
    except BackendRefused as exc:
        return error(
            Reason.INVALID_ARGUMENTS, retryable=False, guidance=f"The {spec.backend} refused: {exc.detail}"
        ), "400"
    except EgressRefused:
        return backend_error(spec.backend, BackendFailure.NOT_ALLOWED, vendor=backend.vendor), "not_allowed"
    except Exception:  # noqa: BLE001 - a tool's failure is an envelope, never a crashed server
        # The class name only: an exception's text may carry a URL or a header.
        log.error("%s.%s failed unexpectedly", spec.name, tool.name, exc_info=False)
        return error(
            Reason.INTERNAL_ERROR, retryable=False, guidance="The tool failed unexpectedly; do not retry."
        ), "error"
    if isinstance(outcome, Page):
        return ok(outcome.items, source=backend.source, truncated=outcome.truncated), "200"
    return ok(outcome, source=backend.source), "200"


async def _check_done(backend: Backend, tool: ToolSpec, args, write: WriteContext) -> dict:
    try:
        done = await backend.already_done(tool.name, args, write)
    except CannotTell:
        return {"check": "unknown"}
    return {"check": "not_done"} if done is None else {"check": "done", "result": done}


async def check_health(backend: Backend) -> dict:
    """{"ok", "detail"}: one call of the backend's health endpoint, said for an admin. Never the credential."""
    where = _endpoint(backend.url)
    try:
        answer = await backend.health()
    except BackendError as exc:
        problem = {
            BackendFailure.UNAVAILABLE: f"cannot reach {where}"
            + (f" ({backend.status_kind} {exc.status})" if exc.status else ""),
            BackendFailure.FORBIDDEN: f"{where} refused the credential ({backend.status_kind} {exc.status})",
            BackendFailure.TIMEOUT: f"{where} did not answer within {backend.timeout_s:g} s",
            BackendFailure.RATE_LIMITED: f"{where} is throttling requests (HTTP 429); try again later",
            BackendFailure.MALFORMED: f"{where} answered, but not as this adapter's backend does",
        }[exc.failure]
        return {"ok": False, "detail": problem}
    except TargetNotFound:
        return {"ok": False, "detail": f"{where} has no health endpoint: is the URL the backend's base URL?"}
    except EgressRefused as exc:
        return {"ok": False, "detail": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the check reports any failure
        return {"ok": False, "detail": f"the check failed ({type(exc).__name__})"}
    finally:
        await backend.aclose()
    return {"ok": True, "detail": backend.redactor().text(f"reached {where}; {answer}")}


def _endpoint(url: str) -> str:
    """host:port of the backend, for messages: not a path's token nor a userinfo part.

    (console.environment has the same for the console's own URLs; a server process does not import the console.)
    """
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _result(envelope: dict, backend_status: str) -> CallToolResult:
    body = pydantic_core.to_jsonable_python(envelope)
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(body))],
        structured_content=body,
        is_error=is_error(body),
        _meta={META_BACKEND_STATUS: backend_status},
    )
