""" "Check connection": the backend's health endpoint, called with the credential from a process of
the server's own, says what is wrong in words an admin can act on, and never shows the secret."""

from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from console.manage import administration
from investigations.models import AuditRecord
from tests.support import free_port
from toolserver.config import binding_of
from toolserver.models import Credential, ToolServer
from toolserver.supervisor import check_connection

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def edr_response(lab):
    return ToolServer.objects.get(name="edr-response")


def test_a_working_backend_names_the_keys_scopes(edr_response):
    assert check_connection("edr-response") == {
        "ok": True,
        "detail": f"reached {host_of(edr_response)}; the key is valid, with scopes edr:isolate",
    }


def test_an_unreachable_url_is_named_by_host_and_port(edr_response, admin_user, lab, settings):
    port = free_port()
    settings.BACKEND_ALLOWED_HOSTS = [f"127.0.0.1:{port}"]
    administration.update_server(edr_response, admin_user, {"url": f"http://127.0.0.1:{port}/api"})
    administration.set_credential(edr_response, admin_user, secret=lab.keys["edr-response"])
    assert check_connection("edr-response") == {"ok": False, "detail": f"cannot reach 127.0.0.1:{port}"}


def test_a_key_the_backend_refuses_says_so_without_showing_it(edr_response, admin_user):
    administration.set_credential(edr_response, admin_user, secret="not-a-key-the-lab-knows")
    result = check_connection("edr-response")
    assert result == {"ok": False, "detail": f"{host_of(edr_response)} refused the credential (HTTP 401)"}


def test_a_revoked_or_unresolvable_credential_is_named(edr_response, admin_user, lab):
    administration.set_credential(edr_response, admin_user, reference="file:edr-response/not-there.key")
    assert check_connection("edr-response") == {
        "ok": False,
        "detail": f"the credential file {lab.credentials_dir}/edr-response/not-there.key cannot be read",
    }
    administration.revoke_credential(edr_response, admin_user)
    result = check_connection("edr-response")
    assert not result["ok"] and "was revoked, never set" in result["detail"]


def test_an_adapter_the_server_does_not_have_is_named(edr_response, admin_user):
    ToolServer.objects.filter(pk=edr_response.pk).update(adapter="vendor-x")  # past the form, which refuses it
    edr_response.refresh_from_db()
    administration.set_credential(edr_response, admin_user, secret="a-key-for-vendor-x")
    assert check_connection("edr-response") == {"ok": False, "detail": "unknown server or adapter 'vendor-x'"}


def test_the_button_shows_the_answer_on_the_servers_page(edr_response, admin_user, client):
    client.force_login(admin_user)
    response = client.post(reverse("manage:check", args=["edr-response"]), follow=True)
    assert "Check connection: reached" in response.content.decode()
    assert "with scopes edr:isolate" in response.content.decode()


def test_a_sealing_key_is_retired_after_a_reseal_and_the_credential_still_reaches_the_backend(
    edr_response, admin_user, lab, settings
):
    old, new = "old-credentials-key-" + "0" * 40, "new-credentials-key-" + "1" * 40
    settings.CREDENTIALS_KEY = old
    administration.set_credential(edr_response, admin_user, secret=lab.keys["edr-response"])
    unopenable = ToolServer.objects.get(name="intel")
    settings.CREDENTIALS_KEY = "a-key-nobody-has-any-more-" + "2" * 40
    administration.set_credential(unopenable, admin_user, secret=lab.keys["intel"])
    kept = Credential.objects.get(server=unopenable).sealed

    settings.CREDENTIALS_KEY = f"{new},{old}"
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 credential"):
        call_command("reseal_credentials", stdout=out, stderr=err)
    fingerprint = Credential.objects.get(server=edr_response).fingerprint
    assert out.getvalue().split() == ["resealed", "edr-response:", "fingerprint", fingerprint]
    assert err.getvalue().split()[:3] == ["not", "opened", "intel:"]
    assert Credential.objects.get(server=unopenable).sealed == kept  # left as it was, for an admin to set again

    settings.CREDENTIALS_KEY = new  # the old key removed
    assert check_connection("edr-response")["ok"]
    (record,) = AuditRecord.objects.filter(outcome="credentials_resealed")
    assert record.actor == "manage.py reseal_credentials"
    assert record.extra["after"] == {"credentials": [f"edr-response: fingerprint {fingerprint}"]}


def host_of(server: ToolServer) -> str:
    parts = urlsplit(binding_of(server.name).url)
    return f"{parts.hostname}:{parts.port}"
