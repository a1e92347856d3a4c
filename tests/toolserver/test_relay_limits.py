"""An external server's lines through its relay (toolserver.launch): one too long is never read whole.

A hostile or broken server's one line of hundreds of megabytes was read whole by the relay and joined chunk by
chunk by the worker's MCP client (quadratic: 80 MB took 51 s of the worker's CPU and 451 MB), long before the
20,000-character cap on what the model is given applied.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.support import ROOT, WAIT_S
from toolserver.launch import EXTERNAL_VARIABLE, MAX_LINE_BYTES

pytestmark = pytest.mark.any_mode

OVER = MAX_LINE_BYTES + 1024 * 1024


def relayed(tmp_path, program: str) -> subprocess.CompletedProcess:
    """The launcher relaying `program` (a Python script) as an admin's stdio server: its outputs, once it ended."""
    script = tmp_path / "server.py"
    script.write_text(textwrap.dedent(program))
    spec = {"transport": "stdio", "command": sys.executable, "args": [str(script)]}
    env = {"PATH": os.environ["PATH"], "GATEHOUSE_SERVER": "big", EXTERNAL_VARIABLE: json.dumps(spec)}
    return subprocess.run(
        [sys.executable, "-m", "toolserver.launch"], cwd=ROOT, env=env, capture_output=True, timeout=WAIT_S
    )


def test_a_message_over_the_limit_stops_the_server_and_none_of_it_is_passed_on(tmp_path):
    ended = relayed(
        tmp_path,
        f"""
        import sys, time
        sys.stdout.write('{{"jsonrpc": "2.0", "id": 1, "result": "' + "x" * {OVER} + '"}}\\n')
        sys.stdout.flush()
        time.sleep(600)  # a server that would go on: stopped by the relay, not by its own end
        """,
    )
    assert ended.stdout == b""
    assert ended.returncode != 0
    assert f"a message of its server over {MAX_LINE_BYTES} bytes: server stopped" in ended.stderr.decode()


def test_a_log_line_over_the_limit_is_left_out_and_the_rest_is_relayed(tmp_path):
    ended = relayed(
        tmp_path,
        f"""
        import sys
        sys.stderr.write("y" * {OVER} + "\\n" + "after the long line\\n")
        sys.stderr.flush()
        sys.stdout.write('{{"jsonrpc": "2.0", "id": 1, "result": {{}}}}\\n')
        """,
    )
    assert ended.returncode == 0
    assert ended.stdout == b'{"jsonrpc": "2.0", "id": 1, "result": {}}\n'
    log = ended.stderr.decode()
    assert "a line of its log over the relay's limit, left out" in log and "after the long line" in log
    assert "yyyy" not in log
