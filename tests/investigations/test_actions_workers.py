"""Approvals over HTTP, executed by a real worker process: the write reaches the lab once and the
investigation resumes; fifty people approving the same request at once still fire it once.

The worker is `celery -A console worker` on Redis in production mode; on the embedded default it
is a console process with its worker in a thread, and the approval is posted to that console,
because the embedded worker's broker lives in it. In production mode the approval goes to the
session's console (`live_console`), whose broker is the worker's Redis. The test process only receives
the alert (the worker runs the investigation until it waits) and reads the database.
"""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from core.roles import ANALYST
from investigations.intake.services import receive_alert
from investigations.models import (
    ActionApproval,
    ActionRequest,
    ActionTransition,
    Event,
    Investigation,
)
from investigations.tokens import create_api_token
from tests.investigations.workers import WorkerProcess, worker_env
from tests.support import WAIT_S, story_alert, wait_until
from toolserver.lab.models import LabWrite

pytestmark = pytest.mark.django_db(transaction=True)

CONCURRENT = 50


@pytest.fixture
def worker(lab, tmp_path, settings_offline):
    if settings.PRODUCTION:  # tasks left by other tests' in-process runs are not this test's business
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    process = WorkerProcess(worker_env(lab), tmp_path).start()
    yield process
    process.stop()


@pytest.fixture
def console_url(worker, live_console):
    """Where a decision goes: a console whose broker reaches the worker.

    On the embedded default that is the worker's own console. In production mode it is the session's
    `live_console`: its django-guardian checks hold across tests, as the flush between them keeps the
    content types' ids that it caches (tests/flushing.py).
    """
    return worker.console.url if worker.console else live_console.url


def waiting_request(investigation_id: int, tool: str) -> ActionRequest | None:
    return ActionRequest.objects.filter(investigation_id=investigation_id, tool=tool, state="pending").first()


def settled(request_id: int) -> ActionRequest | None:
    request = ActionRequest.objects.get(pk=request_id)
    return request if request.is_final else None


def isolation_pending() -> ActionRequest:
    """Receive the phishing story's alert and let the worker run it until it asks to isolate WS-FIN-07."""
    investigation = receive_alert(story_alert("LAB-SIEM-1001")).investigation
    return wait_until(
        lambda: waiting_request(investigation.pk, "isolate_host"),
        timeout=120,
        what="the worker to ask for the isolation",
    )


def approve(console_url: str, request_id: int, token: str, client=httpx) -> httpx.Response:
    return client.post(
        f"{console_url}/api/actions/{request_id}/approve",
        json={"reason": "phishing confirmed"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def test_approved_over_http_the_worker_isolates_once_and_the_investigation_resumes(worker, console_url, analyst):
    request = isolation_pending()
    investigation = request.investigation
    _, token = create_api_token(analyst, "tests", decide=True)

    response = approve(console_url, request.pk, token)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "approved"

    request = wait_until(lambda: settled(request.pk), timeout=60, what="the worker to execute the isolation")
    assert (request.state, request.outcome) == ("succeeded", "WS-FIN-07 isolated"), worker.log()[-3000:]
    assert LabWrite.objects.filter(action="isolate_host").count() == 1

    # The investigation resumed: the model got the result, after the event that says it succeeded ...
    answered = investigation.events.filter(kind=Event.Kind.TOOL_RESULT, data__tool_use_id=request.tool_use_id)
    result = wait_until(answered.first, timeout=60, what="the resumed investigation to receive the result")
    succeeded = investigation.events.get(kind=Event.Kind.ACTION, data__id=request.pk, data__state="succeeded")
    assert result.seq > succeeded.seq
    assert result.data["result"]["status"] == "ok"
    # ... and went on to its next step: it now waits for another request, not this one.
    following = wait_until(
        lambda: waiting_request(investigation.pk, "disable_account"),
        timeout=60,
        what="the investigation's next request",
    )
    assert following.pk != request.pk
    investigation = wait_until(
        Investigation.objects.filter(pk=investigation.pk, status="waiting").first,
        timeout=60,
        what="the investigation to wait again",
    )
    last_status = investigation.events.filter(kind=Event.Kind.STATUS).order_by("-seq").first()
    assert last_status.data["message"] == "Waiting for an analyst to decide on disable_account."
    assert last_status.seq > result.seq
    assert LabWrite.objects.filter(action="isolate_host").count() == 1  # nothing fired twice on the way


def test_fifty_people_approving_at_once_fire_it_once(worker, console_url):
    """Fifty analysts (fifty users, each with a token) approve one request in the same instant.

    Exactly one gets 200. A second 200 cannot happen: the decision reads the request under a row
    lock (SELECT ... FOR UPDATE on PostgreSQL; SQLite's write lock, taken when the transaction
    begins) and moves it with an update guarded by `state = 'pending'`, so the first approval
    commits pending -> approved and every later one finds it approved (or already executing or
    succeeded) and is refused with 409 and the state it found. A state never goes back to pending.
    """
    request = isolation_pending()
    group = Group.objects.get(name=ANALYST)
    tokens = {}
    for number in range(CONCURRENT):
        user = get_user_model().objects.create_user(f"analyst-{number:02d}")  # no password: token only
        user.groups.add(group)
        tokens[user.username] = create_api_token(user, "tests", decide=True)[1]

    start = threading.Barrier(CONCURRENT)

    def approve_as(username: str) -> tuple[str, httpx.Response]:
        with httpx.Client() as client:
            start.wait(timeout=WAIT_S)
            return username, approve(console_url, request.pk, tokens[username], client)

    with ThreadPoolExecutor(CONCURRENT) as pool:
        answers = list(pool.map(approve_as, tokens))

    statuses = Counter(response.status_code for _, response in answers)
    unexpected = [
        (response.status_code, response.text) for _, response in answers if response.status_code not in (200, 409)
    ]
    assert statuses == {200: 1, 409: CONCURRENT - 1}, unexpected
    [(winner, accepted)] = [(username, response) for username, response in answers if response.status_code == 200]
    assert accepted.json()["state"] == "approved"
    for _, response in answers:
        if response.status_code == 409:
            body = response.json()
            assert body["state"] in ("approved", "executing", "succeeded"), body
            assert body["request"]["id"] == request.pk and body["request"]["approvals"] == 1

    request = wait_until(lambda: settled(request.pk), timeout=60, what="the worker to execute the isolation")
    assert request.state == "succeeded", worker.log()[-3000:]
    assert LabWrite.objects.filter(action="isolate_host").count() == 1
    assert list(ActionApproval.objects.filter(request=request).values_list("user__username", flat=True)) == [winner]
    assert list(ActionTransition.objects.filter(request=request).values_list("from_state", "to_state")) == [
        ("", "pending"),
        ("pending", "approved"),
        ("approved", "executing"),
        ("executing", "succeeded"),
    ]
