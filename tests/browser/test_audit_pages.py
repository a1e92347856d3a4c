"""A manager filters the audit trail in the browser, exports the filtered view and opens a timeline."""

import csv
import io

import pytest

from core.roles import MANAGER
from investigations.audit import chain as audit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_manager_filters_the_trail_exports_it_and_opens_a_timeline(make_user, make_investigation, sign_in):
    investigation = make_investigation("AUD-BROWSER-1")
    other = make_investigation("AUD-BROWSER-2")
    for tool, server, outcome, reason, latency in [
        ("search_logins", "siem", "ok", "", 120.0),
        ("get_host", "edr", "ok", "", 40.0),
        ("lookup_indicator", "intel", "error", "intel_unavailable", 900.0),
        ("get_host", "edr", "ok", "", 35.0),
    ]:
        audit.append(
            kind="tool_call",
            server=server,
            tool=tool,
            outcome=outcome,
            reason=reason,
            actor="agent",
            latency_ms=latency,
            correlation_id=investigation.correlation_id,
        )
    audit.append(
        kind="tool_call",
        server="edr",
        tool="get_host",
        outcome="ok",
        actor="agent",
        correlation_id=other.correlation_id,
    )
    make_user("max", MANAGER)

    page = sign_in("max")
    page.locator('[data-nav="investigations:audit"]').click()
    page.wait_for_selector("#audit-records")
    assert page.locator("#audit-records tbody tr").count() >= 5

    page.select_option("select[name=tool]", "get_host")
    page.fill("input[name=investigation]", str(investigation.pk))
    page.click("#audit-filters button[type=submit]")
    page.wait_for_url("**tool=get_host**")
    rows = page.locator("#audit-records tbody tr")
    assert [rows.nth(i).get_attribute("data-seq") for i in range(rows.count())] == ["4", "2"]

    with page.expect_download() as download:
        page.click("#export-csv")
    exported = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert [row["seq"] for row in exported] == ["2", "4"]  # the same records, in chain order
    assert {row["tool"] for row in exported} == {"get_host"}

    rows.first.locator("a[title=Timeline]").click()
    page.wait_for_selector("#timeline-chart")
    bars = page.locator("#timeline-chart g.bar")
    assert bars.count() == 4
    assert [bars.nth(i).get_attribute("data-outcome") for i in range(4)] == ["ok", "ok", "error", "ok"]
    # The slow failed call is the widest bar.
    widths = [float(bars.nth(i).locator("rect").get_attribute("width")) for i in range(4)]
    assert max(widths) == widths[2]
    assert "intel_unavailable" in page.locator("#timeline-calls").inner_text()
