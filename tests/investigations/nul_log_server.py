"""A test MCP server over stdio whose one tool, `tail`, answers with a log line holding a NUL, as a web
server's log does when a client sent one (`GET /login?u=admin%00`, decoded by the log's writer).

    python tests/investigations/nul_log_server.py
"""

import asyncio

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

LINE = "GET /login?u=admin\x00' HTTP/1.1 200 from 203.0.113.9"
SCHEMA = {"type": "object", "properties": {}, "additionalProperties": False}


async def main() -> None:
    async def list_tools(_context, _params) -> types.ListToolsResult:
        tool = types.Tool(name="tail", description="The last line of the web server's log.", input_schema=SCHEMA)
        return types.ListToolsResult(tools=[tool])

    async def call_tool(_context, _params: types.CallToolRequestParams) -> types.CallToolResult:
        answer = {"line": LINE}
        return types.CallToolResult(content=[types.TextContent(type="text", text=LINE)], structured_content=answer)

    server = Server("logs", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    asyncio.run(main())
