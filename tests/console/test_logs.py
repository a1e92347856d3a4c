"""What the console logs of a request it refuses: one line, no traceback."""

import logging

import pytest

from core.roles import ANALYST


@pytest.mark.parametrize(
    "path, status",
    [
        ("/manage/servers/edr-response/", 403),  # PermissionDenied: an analyst is no admin
        ("/manage/servers/no-such-server/", 404),  # Http404 from get_object_or_404
    ],
)
def test_a_refusal_is_logged_as_one_line_without_a_traceback(client, make_user, caplog, path, status):
    client.force_login(make_user("ana", ANALYST))
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get(path).status_code == status
    (record,) = [record for record in caplog.records if record.name == "django.request"]
    assert record.status_code == status
    assert record.exc_info is None
    assert "\n" not in logging.Formatter("%(message)s").format(record)
    assert "Traceback" not in caplog.text


def test_a_server_error_keeps_its_traceback(client, caplog):
    logger = logging.getLogger("django.request")
    with caplog.at_level(logging.ERROR, logger="django.request"):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.error("Internal Server Error: /x", exc_info=True, extra={"status_code": 500})  # noqa: G201 - as Django logs it
    assert "Traceback" in caplog.text and "RuntimeError: boom" in caplog.text


@pytest.mark.parametrize(
    "breaks, escaped",
    [
        ("\n", "\\x0a"),
        ("\x85", "\\x85"),  # NEL, a C1 control: str.splitlines and some log viewers break the line there
        ("\u2028", "\\u2028"),  # the line separator
        ("\u202e", "\\u202e"),  # a right-to-left override: the line would read reversed from here
    ],
)
def test_a_value_a_client_chose_cannot_end_the_line_and_forge_the_next(breaks, escaped):
    """A path decoded from %0a (or %c2%85, %e2%80%a8), logged as the API's error line logs it, through the
    console's own logging."""
    logger = logging.getLogger("console.middleware")
    (handler,) = [handler for handler in logging.getLogger().handlers if handler.name == "stderr"]
    forged = f"/api/alerts/x{breaks}2026-01-01 00:00:00,000 INFO console admin signed in\tnow"
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "API %s %s failed", ("POST", forged), None)
    assert logger.filter(record) and handler.filter(record)
    line = handler.format(record)
    assert len(line.splitlines()) == 1 and line.endswith(
        f"API POST /api/alerts/x{escaped}2026-01-01 00:00:00,000 INFO console admin signed in\tnow failed"
    )


def test_a_traceback_a_worker_logs_keeps_its_lines():
    """The agent passes a failed investigation's traceback as an argument, for the worker's log to show whole."""
    (handler,) = [handler for handler in logging.getLogger().handlers if handler.name == "stderr"]
    logger = logging.getLogger("investigations.runs.agent")
    trace = 'Traceback (most recent call last):\n  File "agent.py", line 1, in run\nValueError'
    record = logger.makeRecord(
        logger.name, logging.ERROR, __file__, 1, "investigation %s failed:\n%s", (7, trace), None
    )
    assert logger.filter(record) and handler.filter(record)
    assert handler.format(record).endswith(trace)
