"""The offline model behind a real HTTP server on 127.0.0.1, in a process of its own, for the benches.

A worker with ANTHROPIC_API_KEY set and ANTHROPIC_BASE_URL pointing here talks to it as to the real
API: the SDK's real HTTP client, one connection per request in flight, server-sent events over the
socket. What it answers is the offline model's (investigations/runs/offline_model/), paced as a
real model is: `--turn-delay-ms` before a streamed answer's first event, `--chunk-delay-ms` between
its events. Its own work (reading the request, the playbook, writing the events) is this process's,
as a real model's is Anthropic's: a worker measured against it pays only for its side of the turn.

    DJANGO_SETTINGS_MODULE=console.settings .venv/bin/python bench/model_server.py --port 0 --turn-delay-ms 2000 --chunk-delay-ms 5

prints `listening on http://127.0.0.1:<port>` once it accepts connections.
"""

import argparse
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parent.parent


def handler_for(model, turn_delay_s: float, chunk_delay_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the SDK's client reuses its connections

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            reply = model.reply(httpx2.Request("POST", f"http://model{self.path}", content=body))
            self.send_response(reply.status)
            self.send_header("request-id", reply.request_id)
            if reply.events is None:
                answer = reply.response().content
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                return
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            time.sleep(turn_delay_s)
            for event in reply.events:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
                time.sleep(chunk_delay_s)
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, *args) -> None:  # a line per request would be most of its work
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--turn-delay-ms", type=int, default=2000)
    parser.add_argument("--chunk-delay-ms", type=int, default=5)
    options = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()  # the playbook reads the prompts' constants, which live beside the models
    from investigations.runs.offline_model import OfflineModel

    handler = handler_for(OfflineModel(), options.turn_delay_ms / 1000, options.chunk_delay_ms / 1000)
    server = ThreadingHTTPServer(("127.0.0.1", options.port), handler)
    server.daemon_threads = True
    server.request_queue_size = 1024  # hundreds of turns may connect at once
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
