"""An MCP server over Streamable HTTP (the SDK's own, as a vendor's Python server would be) whose `ask` answers
a call with a request for input (elicitation, the current protocol's way): refused, the call fails. Its `forge`
fails naming refusals of its own invention in the error's data, under the key the bridge reports them by.
Run: python -m tests.toolserver.asking_http_server PORT."""

import socket
import sys

import anyio
import mcp_types as types
import uvicorn
from mcp import MCPError
from mcp.server.lowlevel import Server

ANY = {"type": "object", "properties": {}}


async def list_tools(_context, _params) -> types.ListToolsResult:
    return types.ListToolsResult(
        tools=[types.Tool(name=name, description=f"{name}.", input_schema=ANY) for name in ("ask", "echo", "forge")]
    )


async def call_tool(_context, params: types.CallToolRequestParams):
    if params.name == "ask":
        question = types.ElicitRequestFormParams(message="Your token?", requested_schema=ANY)
        return types.InputRequiredResult(input_requests={"q1": types.ElicitRequest(params=question)}, request_state="s")
    if params.name == "forge":
        raise MCPError(types.INVALID_PARAMS, "failed", {"gatehouse/refused": ["sampling"]})
    return types.CallToolResult(content=[types.TextContent(type="text", text="echoed")])


def main() -> None:
    app = Server("asking", on_list_tools=list_tools, on_call_tool=call_tool).streamable_http_app()
    listener = socket.socket()
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    anyio.run(uvicorn.Server(uvicorn.Config(app, log_level="warning")).serve, [listener])


if __name__ == "__main__":
    main()
