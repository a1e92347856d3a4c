"""One built-in tool server over Streamable HTTP on loopback, for the conformance suite (which speaks only HTTP).

The same build_server() as `python -m toolserver.servers`, configured by the same environment;
only the transport differs. It binds 127.0.0.1 on a free port, prints its URL on stdout, and
serves until it is stopped. Not a way to run Gatehouse: the servers speak stdio to their worker.
"""

import os
import socket

import anyio
import uvicorn

from toolserver.catalog import SERVERS
from toolserver.servers import build_server
from toolserver.servers.__main__ import backend_from


def main() -> None:
    server = build_server(SERVERS[os.environ["GATEHOUSE_SERVER"]], backend_from(os.environ))
    app = server.streamable_http_app()  # DNS-rebinding protection on, as for any loopback host
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)  # noqa: T201 - the URL is the output
    config = uvicorn.Config(app, log_level="warning")
    anyio.run(uvicorn.Server(config).serve, [sock])


if __name__ == "__main__":
    main()
