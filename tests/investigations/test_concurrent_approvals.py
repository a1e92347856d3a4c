"""200 analysts approving one request at once (issue 13 item 1).

Before, each request in flight held a PostgreSQL connection of its own (no pool, a thread per
request): past the server's max_connections the losers got HTML 500s. Now each console process
borrows from a bounded pool (GATEHOUSE_DB_POOL_SIZE) and waits its turn: one approval, one write
queued, and every other analyst a 409 in JSON naming the request's state.
"""

import asyncio
from collections import Counter

import httpx2 as httpx
import pytest
from django.contrib.auth.models import Group, User
from django.db import connection

from core.roles import ANALYST
from investigations.models import ActionApproval
from investigations.tokens import create_api_token
from tests.support import ConsoleProcess, console_env, database_url_of

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]
ANALYSTS = 200


def many_analysts(count: int) -> list[str]:
    users = User.objects.bulk_create([User(username=f"analyst-{n:03}", password="!") for n in range(count)])
    Group.objects.get(name=ANALYST).user_set.add(*users)
    return [create_api_token(user, "race", decide=True)[1] for user in users]


async def approve_all(url: str, tokens: list[str]) -> list[httpx.Response | Exception]:
    limits = httpx.Limits(max_connections=len(tokens))
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        return await asyncio.gather(
            *(client.post(url, json={}, headers={"Authorization": f"Bearer {token}"}) for token in tokens),
            return_exceptions=True,
        )


def test_every_loser_of_a_200_way_approval_race_gets_409_in_json(waiting, lab):
    _, request = waiting
    tokens = many_analysts(ANALYSTS)
    console = ConsoleProcess(
        console_env(
            DATABASE_URL=database_url_of(connection.settings_dict),
            GATEHOUSE_DB_POOL_SIZE="5",
            # The race, not the machine's speed, is under test: on a loaded 2-core machine 200 requests
            # through 5 connections can wait past the default 10 s, and those would (rightly) get 503.
            GATEHOUSE_DB_POOL_TIMEOUT_S="120",
            **lab.environment(),
        )
    )
    try:
        answers = asyncio.run(approve_all(f"{console.url}/api/actions/{request.pk}/approve", tokens))
    finally:
        console.stop()

    failures = [answer for answer in answers if isinstance(answer, Exception)]
    assert failures == []  # every analyst got an answer
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {200: 1, 409: ANALYSTS - 1}, statuses
    losers = [answer.json() for answer in answers if answer.status_code == 409]
    assert {body["state"] for body in losers} <= {"approved", "executing", "succeeded"}
    assert ActionApproval.objects.filter(request=request).count() == 1
