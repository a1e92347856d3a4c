"""An external Streamable HTTP server, reached through a stdio process of its own.

The supervisor speaks stdio to every server; for an HTTP one the launcher runs this bridge, which
holds the server's credential (sent as the header the server expects) and nothing else of ours, and
whose every connection passes the egress guard (the URL's host on GATEHOUSE_BACKEND_ALLOWED_HOSTS,
checked after resolving). It relays tools/list and tools/call, and nothing else: the server's own
requests back (sampling, elicitation, roots) are refused here, and each refusal goes back with the
call's answer (its `_meta`, META_REFUSED; its error's data when the call failed) for the call's audit
record, as the supervisor keeps a stdio server's (toolserver.supervisor); whatever the server put
under that key itself is dropped.
Its launcher stays as its parent and redacts the credential from every line it answers
(toolserver.launch.relay), as for a stdio server. No Django here.
"""

import asyncio
import os

import mcp_types as types
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from toolserver import egress
from toolserver.meta import META_REFUSED

URL_VARIABLE = "GATEHOUSE_BRIDGE_URL"
HEADER_VARIABLE = "GATEHOUSE_BRIDGE_HEADER"
SECRET_VARIABLE = "GATEHOUSE_BRIDGE_SECRET"  # noqa: S105 - a variable's name


async def main() -> None:
    header, secret = os.environ.get(HEADER_VARIABLE, ""), os.environ.get(SECRET_VARIABLE, "")
    headers = {header: secret} if header and secret else {}
    refused: list[str] = []  # since the last answer

    def refuse(what: str):
        async def refused_now(*_args, **_kwargs) -> types.ErrorData:
            refused.append(what)
            return types.ErrorData(code=types.INVALID_REQUEST, message=f"Gatehouse does not serve {what}")

        return refused_now

    async with (
        egress.http_client(egress.from_environ(), headers=headers, timeout=60) as http,
        Client(
            streamable_http_client(os.environ[URL_VARIABLE], http_client=http),
            sampling_callback=refuse("sampling"),
            elicitation_callback=refuse("elicitation"),
            list_roots_callback=refuse("roots"),
        ) as upstream,
    ):

        async def list_tools(_context, _params) -> types.ListToolsResult:
            return types.ListToolsResult(tools=(await upstream.list_tools()).tools)

        def taken() -> list[str]:
            said = sorted(set(refused))
            refused.clear()
            return said

        async def call_tool(_context, params: types.CallToolRequestParams) -> types.CallToolResult:
            try:
                result = await upstream.call_tool(params.name, params.arguments or {})
            except MCPError as failed:  # failed because of a refusal, maybe: it goes with this call's error,
                # and the server's own data never does (under our key it would forge a refusal in the record)
                raise MCPError(failed.code, failed.message, {META_REFUSED: taken()} if refused else None) from None
            meta = {key: value for key, value in (result.meta or {}).items() if key != META_REFUSED}
            if refused:
                meta[META_REFUSED] = taken()
            return result.model_copy(update={"meta": meta or None})

        server = Server("gatehouse-bridge", on_list_tools=list_tools, on_call_tool=call_tool)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    asyncio.run(main())
