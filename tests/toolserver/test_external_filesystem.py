"""@modelcontextprotocol/server-filesystem over stdio (installed by `make mcp-servers`), its allowed
directory a folder of the test's own: an MCP server nobody here wrote that writes to disk.

Its write_file, classified write by the admin, does nothing until an analyst approves, then writes
once; a repeat for the same alert replays, even after someone changed the file meanwhile. Its
read_text_file and list_directory, classified read, answer at once. A path outside its directory
(straight, through `..` or through a symlink) is refused by the server itself and comes back as
filesystem_tool_error, never a success. It asks for our roots as it starts (we declare them, so a
server asks rather than doing without); refused, it keeps the directory on its command line.
"""

import json
import os

import pytest

from console.manage import administration
from investigations.models import AuditRecord
from tests.support import WAIT_S, accept_as_listed, wait_until
from toolserver import config, external
from toolserver.gateway import CallContext, Gateway
from toolserver.models import Tool

pytestmark = pytest.mark.django_db(transaction=True)

READS = ("read_text_file", "list_directory")
SECRET = "outside-the-allowed-directory-7d41"
REPORT = "ws-fin-07 isolated pending review\n"


@pytest.fixture
def filesystem(register_node_server, tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    server = register_node_server("filesystem", "server-filesystem", args=(str(allowed),))
    server.allowed, server.outside = allowed, outside
    return server


@pytest.fixture
def accepted(filesystem, admin_user):
    administration.discover(filesystem)
    for name in READS:
        accept_as_listed(Tool.objects.get(name=f"filesystem__{name}"), admin_user, access="read")
    accept_as_listed(Tool.objects.get(name="filesystem__write_file"), admin_user, access="write", target_args=["path"])
    return filesystem


def context(approval: str = "") -> CallContext:
    return CallContext(correlation_id="inv-fs-1", trigger="alert-fs-1", approval=approval)


def written(path) -> tuple[str, int, int]:
    """What a second write would change: the content, the inode and the modification time."""
    status = os.stat(path)
    return path.read_text(), status.st_ino, status.st_mtime_ns


def test_its_tools_wait_for_an_admin_and_its_hints_are_only_shown(filesystem):
    found = administration.discover(filesystem)
    assert {"filesystem__write_file", "filesystem__read_text_file", "filesystem__list_directory"} <= set(found)
    write_file = Tool.objects.get(name="filesystem__write_file")
    assert (write_file.remote_name, write_file.usable) == ("write_file", False)
    assert external.hints(write_file.proposed["annotations"]) == {"readOnlyHint": False, "destructiveHint": True}
    assert not any(tool["name"].startswith("filesystem__") for tool in config.offered_tools())
    refused = Gateway().call("filesystem__list_directory", {"path": str(filesystem.allowed)}, context())
    assert refused["reason"] == "tool_disabled"


def test_its_reads_answer_without_approval_and_its_ask_for_our_roots_is_refused(accepted, caplog):
    (accepted.allowed / "notes.txt").write_text("beaconing to 203.0.113.9\n")
    (accepted.allowed / "cases").mkdir()
    gateway = Gateway()
    text = gateway.call("filesystem__read_text_file", {"path": str(accepted.allowed / "notes.txt")}, context())
    assert (text["status"], text["source"], text["truncated"]) == ("ok", "mcp:filesystem", False)
    assert text["data"] == {"content": "beaconing to 203.0.113.9\n"}
    listing = gateway.call("filesystem__list_directory", {"path": str(accepted.allowed)}, context())
    assert sorted(listing["data"]["content"].splitlines()) == ["[DIR] cases", "[FILE] notes.txt"]
    records = AuditRecord.objects.filter(kind="tool_call", server="filesystem").order_by("seq")
    assert [(record.tool, record.outcome) for record in records] == [
        ("filesystem__read_text_file", "ok"),
        ("filesystem__list_directory", "ok"),
    ]
    # It asked for roots as it started (asynchronously, hence the bounded wait) and kept its own directory.
    wait_until(
        lambda: any("filesystem asked for roots: refused" in record.getMessage() for record in caplog.records),
        timeout=WAIT_S,
        what="the filesystem server's roots request refused",
    )


def test_a_write_is_a_request_an_analyst_approves_then_one_write_and_a_repeat_replays(
    accepted, make_investigation, analyst
):
    from investigations.approvals import services as approvals
    from investigations.runs import services

    report = accepted.allowed / "report.txt"
    investigation = make_investigation("FS-1")
    owner = services.claim(investigation.pk)
    gateway = Gateway()

    def ask(tool_use_id: str):
        use = {"id": tool_use_id, "name": "filesystem__write_file", "input": {"path": str(report), "content": REPORT}}
        return approvals.request_action(investigation, use, owner=owner, gateway=gateway)

    first = ask("toolu_fs_1")
    assert (first.state, first.server, first.tool) == ("pending", "filesystem", "filesystem__write_file")
    assert not report.exists()  # nothing until a person says so
    approvals.approve(first.pk, analyst)
    approvals.execute(first.pk)
    first.refresh_from_db()
    assert first.state == "succeeded"
    assert report.read_text() == REPORT

    report.write_text("edited by an analyst\n")  # someone changes the file between the two requests
    before = written(report)
    second = ask("toolu_fs_2")  # the model asks again for the same alert and path
    assert second.idempotency_key == first.idempotency_key
    approvals.approve(second.pk, analyst)
    approvals.execute(second.pk)
    second.refresh_from_db()
    assert second.result["data"]["replayed"] is True
    assert written(report) == before  # replayed, not written again over the edit
    sent = AuditRecord.objects.filter(kind="tool_call", tool="filesystem__write_file", outcome="ok")
    assert sent.count() == 1


def test_without_approval_nothing_is_written_and_other_content_for_the_same_path_is_a_conflict(accepted):
    report = accepted.allowed / "report.txt"
    gateway = Gateway()
    arguments = {"path": str(report), "content": REPORT}
    assert gateway.call("filesystem__write_file", arguments, context())["reason"] == "approval_required"
    assert not report.exists()
    assert gateway.call("filesystem__write_file", arguments, context(approval="approved-1"))["status"] == "ok"
    before = written(report)
    other = gateway.call("filesystem__write_file", {**arguments, "content": "other\n"}, context(approval="approved-2"))
    assert other["reason"] == "idempotency_conflict"
    assert written(report) == before


@pytest.mark.parametrize(
    ("tool", "where"),
    [
        ("read_text_file", "outside/secret.txt"),
        ("read_text_file", "allowed/../outside/secret.txt"),
        ("read_text_file", "allowed/link.txt"),  # a symlink in the allowed directory to the file outside it
        ("list_directory", "outside"),
        ("write_file", "outside/planted.txt"),
    ],
)
def test_a_path_outside_its_directory_is_refused_by_the_server_as_a_typed_error(accepted, tmp_path, tool, where):
    (accepted.allowed / "link.txt").symlink_to(accepted.outside / "secret.txt")
    arguments = {"path": f"{tmp_path}/{where}"} | ({"content": SECRET} if tool == "write_file" else {})
    result = Gateway().call(f"filesystem__{tool}", arguments, context(approval="approved-outside"))
    assert (result["status"], result["reason"], result["retryable"]) == ("error", "filesystem_tool_error", False)
    assert "outside allowed directories" in result["detail"]  # the server's own refusal, not a crash
    assert SECRET not in json.dumps(result)
    assert sorted(path.name for path in accepted.outside.iterdir()) == ["secret.txt"]
    [record] = AuditRecord.objects.filter(kind="tool_call", tool=f"filesystem__{tool}", outcome="error")
    assert "is_error" in record.backend_status
