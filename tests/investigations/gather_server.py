"""A test MCP server over stdio whose one tool, `gather`, answers once PARTY calls are inside it at the
same time (argv[1]), or after the bound (argv[2] seconds) with `met` false: calls made one after another
never meet.

    python tests/investigations/gather_server.py 3 10
"""

import asyncio
import contextlib
import json
import sys

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

SCHEMA = {
    "type": "object",
    "properties": {"who": {"type": "string", "maxLength": 20}},
    "required": ["who"],
    "additionalProperties": False,
}


async def main(party: int, bound_s: float) -> None:
    arrived = 0
    everyone_in = asyncio.Event()

    async def list_tools(_context, _params) -> types.ListToolsResult:
        tool = types.Tool(name="gather", description="Answers once the whole party is inside.", input_schema=SCHEMA)
        return types.ListToolsResult(tools=[tool])

    async def call_tool(_context, params: types.CallToolRequestParams) -> types.CallToolResult:
        nonlocal arrived
        arrived += 1
        if arrived >= party:
            everyone_in.set()
        with contextlib.suppress(TimeoutError):  # waited out: it says so
            await asyncio.wait_for(everyone_in.wait(), bound_s)
        answer = {"who": (params.arguments or {}).get("who"), "met": everyone_in.is_set()}
        text = types.TextContent(type="text", text=json.dumps(answer))
        return types.CallToolResult(content=[text], structured_content=answer)

    server = Server("gather", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
