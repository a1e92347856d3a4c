"""An admin sets a tool server's credential and sees only its fingerprint, switches one of its tools
off, and an investigation then gets a typed tool_disabled answer for that tool.

A real `manage.py serve` console and its worker (a `celery worker` in production mode), as in
test_approval_live.py. The credential set in the browser is a new lab key for `edr`, and the key
the run started with is revoked: the investigation's other `edr` calls succeed only with it.
"""

import re

import pytest
from playwright.sync_api import expect

from core.roles import ADMIN, ANALYST
from investigations.models import AuditRecord, Investigation
from tests.browser.conftest import raise_story, signed_in
from toolserver.lab.keys import SERVER_SCOPES, issue_key, revoke_key
from toolserver.models import Credential, Tool

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RUN_TIMEOUT_MS = 120_000  # the whole story, on a slow machine
SERVER, DISABLED, STILL_ON = "edr", "get_host", "get_process_tree"  # LAB-SIEM-1003 calls both tools


def test_an_admin_sets_a_credential_disables_a_tool_and_the_investigation_is_refused_it(
    lab, console, make_user, page, second_page
):
    make_user("ada-admin", ADMIN, is_staff=True)
    make_user("ana-admin-run", ANALYST)
    secret = issue_key(f"{SERVER}-rotated", SERVER_SCOPES[SERVER])  # the EDR issues a second key

    # The server's page, from the navigation: it runs on the deployment's credential.
    admin = signed_in(page, console, "ada-admin")
    admin.locator(".topbar nav").get_by_role("link", name="Tool servers").click()
    admin.locator(f'#servers tr[data-server="{SERVER}"] a').click()
    expect(admin).to_have_url(f"{console.url}/manage/servers/{SERVER}/")
    expect(admin.locator("#current-credential .credential")).to_have_attribute("data-kind", "default")

    # Set the credential: the page shows its fingerprint, never the secret.
    secret_input = admin.locator("#credential-form input[name=secret]")
    expect(secret_input).to_have_attribute("type", "password")
    secret_input.fill(secret)
    admin.get_by_role("button", name="Set credential").click()
    expect(admin.locator("ul.messages li")).to_contain_text("Credential set (fingerprint ")
    fingerprint = admin.locator("#current-credential code.fingerprint")
    expect(fingerprint).to_have_text(re.compile(r"^[0-9a-f]{12}$"))
    shown = fingerprint.inner_text()
    credential = Credential.objects.get(server__name=SERVER)
    assert (credential.kind, credential.fingerprint, credential.set_by) == ("sealed", shown, "ada-admin")
    assert secret not in admin.content()
    expect(secret_input).to_have_value("")

    admin.reload()
    expect(admin.locator("#current-credential code.fingerprint")).to_have_text(shown)
    expect(admin.locator("ul.messages li")).to_have_count(0)
    expect(admin.locator("#credential-form input[name=secret]")).to_have_value("")
    expect(admin.get_by_role("button", name="Rotate credential")).to_be_visible()
    assert secret not in admin.content()
    assert revoke_key(SERVER) == 1  # from now on the lab answers edr only with the credential set above

    # Switch one of the server's tools off, from its row on the server's page.
    admin.locator(f'#server-tools tr[data-tool="{DISABLED}"] a').click()
    expect(admin).to_have_url(f"{console.url}/manage/tools/{DISABLED}/")
    expect(admin.locator("#tool-state")).to_have_text("enabled")
    admin.locator("#id_enabled").uncheck()
    admin.locator("#tool-form").get_by_role("button", name="Save").click()
    expect(admin.locator("ul.messages li")).to_have_text("Saved: enabled.")
    expect(admin.locator("#tool-state")).to_have_text("disabled")
    expect(admin.locator("#id_enabled")).not_to_be_checked()
    assert Tool.objects.get(name=DISABLED).enabled is False

    changes = AuditRecord.objects.filter(kind="admin_change", actor="user:ada-admin")
    assert sorted(changes.values_list("outcome", "server", "tool")) == [
        ("credential_set", SERVER, ""),
        ("tool_changed", SERVER, DISABLED),
    ]
    assert not any(secret in str(record.extra) for record in changes)

    # An analyst raises the travelling manager's story; the agent's call of the disabled tool is refused, typed.
    analyst = signed_in(second_page, console, "ana-admin-run")
    investigation_id = raise_story(analyst, console, "LAB-SIEM-1003")
    expect(analyst.locator("#status")).to_have_attribute("data-status", "completed", timeout=RUN_TIMEOUT_MS)

    def call_of(tool: str):
        return analyst.locator("#transcript .tool-call[data-tool-use-id]").filter(
            has=analyst.locator(".tool-name", has_text=re.compile(f"^{tool}$"))
        )

    refused = call_of(DISABLED)
    expect(refused).to_have_count(1)  # not retried
    expect(refused.locator(".tool-result.error .reason")).to_have_text("tool_disabled")
    expect(refused.locator(".tool-result.error .guidance")).to_contain_text("an admin switched it off")
    expect(call_of(STILL_ON).locator(".tool-result.ok")).to_have_count(1)  # edr answered, on the new credential
    expect(analyst.locator("#verdict")).to_have_attribute("data-verdict", "inconclusive")  # a check it could not make

    correlation_id = Investigation.objects.get(pk=investigation_id).correlation_id
    calls = AuditRecord.objects.filter(kind="tool_call", correlation_id=correlation_id)
    assert list(calls.filter(tool=DISABLED).values_list("outcome", "reason")) == [("error", "tool_disabled")]
    assert list(calls.filter(tool=STILL_ON).values_list("outcome", "server")) == [("ok", SERVER)]
