"""A hostile model: a real HTTP server on 127.0.0.1 that speaks the streaming Messages API and
answers each request with the next scripted turn, reached by the agent loop through the
anthropic SDK (ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL set in the settings).

It validates every request as the offline model does (investigations/runs/offline_model/), so a
conversation the real API would refuse gets the real API's 400. When the script runs out it
ends the investigation with an inconclusive verdict.

    with HostileModel([tool_turn(("toolu_1", "get_host", ["DC-01"]))]) as model:
        settings.ANTHROPIC_BASE_URL = model.url
        ...
    model.requests   # the bodies it received
"""

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from investigations.runs.offline_model import InvalidRequest, sse, validate_request

VERDICT = '<verdict>{"verdict": "inconclusive", "summary": "The script ended.", "evidence": []}</verdict>'


@dataclass
class Turn:
    frames: list[bytes]
    pace_s: float = 0.0  # between frames: a slow model
    meanwhile: Callable[[], None] | None = None  # what happens elsewhere while it streams (before its last frame)


def _start() -> bytes:
    message = {
        "id": "msg_hostile",
        "type": "message",
        "role": "assistant",
        "model": "hostile-1",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1},
    }
    return sse("message_start", {"type": "message_start", "message": message})


def _end(stop_reason: str | None) -> list[bytes]:
    return [
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]


def _text(index: int, text: str) -> list[bytes]:
    return [
        sse(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        ),
        sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}},
        ),
        sse("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def _tool_use(index: int, tool_use_id: str, name: str, partial_json: str, *, stop: bool = True) -> list[bytes]:
    opened = {"type": "tool_use", "id": tool_use_id, "name": name, "input": {}}
    frames = [sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": opened})]
    for i in range(0, len(partial_json), 8):  # the input in JSON fragments, as the API sends it
        piece = partial_json[i : i + 8]
        frames.append(
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                },
            )
        )
    if stop:
        frames.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    return frames


def tool_turn(*uses: tuple[str, str, object], text: str = "Checking.") -> Turn:
    """A finished turn asking for tools: each use (id, name, input), the input any JSON value."""
    frames = [_start(), *_text(0, text)]
    for index, (tool_use_id, name, tool_input) in enumerate(uses, start=1):
        frames += _tool_use(index, tool_use_id, name, json.dumps(tool_input))
    return Turn([*frames, *_end("tool_use")])


def truncated_turn(tool_use_id: str, name: str, partial_json: str) -> Turn:
    """A turn cut at max_tokens in the middle of a tool call's input."""
    return Turn(
        [
            _start(),
            *_text(0, "Checking."),
            *_tool_use(1, tool_use_id, name, partial_json, stop=False),
            *_end("max_tokens"),
        ]
    )


def verdict_turn() -> Turn:
    return Turn([_start(), *_text(0, VERDICT), *_end("end_turn")])


def slow_turn(*, kind: str, frames: int, pace_s: float) -> Turn:
    """A turn that keeps streaming, a frame every pace_s: text the client sees, or pings the SDK swallows."""
    opened = sse(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    delta = sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Still thinking. "}},
    )
    frame = delta if kind == "text" else sse("ping", {"type": "ping"})
    return Turn([_start(), opened, *[frame] * frames, *_end("end_turn")], pace_s=pace_s)


@dataclass
class HostileModel:
    turns: list[Turn]
    requests: list = field(default_factory=list)
    hung_up: threading.Event = field(default_factory=threading.Event)  # the client left mid-stream
    finished: threading.Event = field(default_factory=threading.Event)  # a turn was streamed to its end

    def __enter__(self):
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hostile-model", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stopping.set()  # a paced stream stops at once
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def next_turn(self, body) -> Turn:
        with self._lock:
            self.requests.append(body)
            return self.turns.pop(0) if self.turns else verdict_turn()


def _handler(model: HostileModel):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            try:
                validate_request(body)
            except InvalidRequest as exc:
                with model._lock:
                    model.requests.append(body)
                return self._json(
                    400, {"type": "error", "error": {"type": "invalid_request_error", "message": str(exc)}}
                )
            turn = model.next_turn(body)
            self.send_response(200)
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.end_headers()  # HTTP/1.0: the stream ends when the connection closes
            try:
                for number, frame in enumerate(turn.frames, start=1):
                    if turn.pace_s and model._stopping.wait(turn.pace_s):
                        return
                    if turn.meanwhile is not None and number == len(turn.frames):
                        turn.meanwhile()
                    self.wfile.write(frame)
                    self.wfile.flush()
            except OSError:
                model.hung_up.set()
            else:
                model.finished.set()

        def _json(self, status: int, data: dict):
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return Handler
