"""A bare mcp echo server over stdio: the baseline bench/toolcall.py compares against."""

import logging
import sys

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

from mcp.server.mcpserver import MCPServer  # noqa: E402

server = MCPServer("echo", log_level="WARNING")


@server.tool(name="echo", description="Echo the text back.")
def echo(text: str) -> str:
    return text


if __name__ == "__main__":
    server.run()
