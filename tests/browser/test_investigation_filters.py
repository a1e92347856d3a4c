"""An analyst narrows a long investigations list in the browser: filters, search, a time range, and back."""

from datetime import timedelta

import pytest

from core.roles import ANALYST
from tests.investigations.test_investigation_filters import T0, make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shown_ids(page) -> list[int]:
    rows = page.locator("#investigations tbody tr")
    return [int(rows.nth(i).get_attribute("data-investigation-id")) for i in range(rows.count())]


def test_an_analyst_filters_and_searches_the_list(make_user, sign_in, live_console):
    beacon = make(
        "BR-1",
        title="Beacon to rare domain",
        host="WS-FIN-07",
        account="a.lee",
        status="completed",
        verdict="malicious",
        severity="high",
        created=T0,
    )
    benign = make(
        "BR-2",
        title="Encoded PowerShell",
        host="WS-FIN-07",
        account="j.doe",
        status="completed",
        verdict="benign",
        severity="high",
        created=T0 + timedelta(hours=1),
    )
    other = make("BR-3", title="Impossible travel", host="VPN-GW", account="j.doe", created=T0 + timedelta(hours=2))
    make_user("ana-filters", ANALYST)

    page = sign_in("ana-filters")
    page.goto(f"{live_console.url}/investigations/")
    page.wait_for_selector("#investigations")
    assert shown_ids(page) == [other.pk, benign.pk, beacon.pk]

    page.fill("#investigation-filters input[name=host]", "ws-fin-07")
    page.select_option("#investigation-filters select[name=verdict]", "malicious")
    page.click("#investigation-filters button[type=submit]")
    page.wait_for_url("**verdict=malicious**")
    assert shown_ids(page) == [beacon.pk]
    assert page.input_value("#investigation-filters input[name=host]") == "ws-fin-07"  # kept on the page

    page.select_option("#investigation-filters select[name=verdict]", "")
    page.fill("#investigation-filters input[name=host]", "")
    page.fill("#investigation-filters input[name=q]", "j.doe")
    page.fill("#investigation-filters input[name=since]", "2026-11-25T09:30")
    page.click("#investigation-filters button[type=submit]")
    page.wait_for_url("**q=j.doe**")
    assert shown_ids(page) == [other.pk, benign.pk]

    page.fill("#investigation-filters input[name=q]", "nothing like this")
    page.click("#investigation-filters button[type=submit]")
    page.wait_for_selector("#no-matches")
    assert shown_ids(page) == []

    page.click("#no-matches a")
    page.wait_for_selector("#investigations")
    assert shown_ids(page) == [other.pk, benign.pk, beacon.pk]
