"""Pointing a server at a real system from its page: the vendor adapters' URLs and parameters.

An admin points identity at a real slapd (an ldap:// URL, the LDAP adapter's parameters) and
intel at a TAXII feed or MISP on the server's page, and Check connection answers there. A
parameter the adapter refuses is named, wherever the refusal is read: beside its field on the
page, in the administration service's refusal, and in Check connection when a stored value no
longer passes (a start refused names it too).
"""

import html
import re

import pytest
from django.test import Client
from django.urls import reverse

from console.manage import administration
from tests.console.test_administration import server_form
from tests.toolserver.misp_server import API_KEY
from toolserver.models import ToolServer
from toolserver.supervisor import check_connection

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


def post(client, server: str, **changes):
    row = ToolServer.objects.get(name=server)
    return client.post(reverse("manage:server", args=[server]), server_form(row, **changes))


def errors_of(page: str, field: str) -> list[str]:
    """The error messages the page shows in `field`'s group."""
    groups = {chunk.split('"', 1)[0]: chunk for chunk in page.split('data-field="')[1:]}
    assert field in groups, f"no field {field} on the page"
    listed = re.search(r'<ul class="errorlist"[^>]*>(.*?)</ul>', groups[field], re.S)
    return (
        [html.unescape(item).strip() for item in re.findall(r"<li>(.*?)</li>", listed.group(1), re.S)] if listed else []
    )


def checked_on_the_page(client, server: str) -> str:
    response = client.post(reverse("manage:check", args=[server]), follow=True)
    return [str(message) for message in response.context["messages"]][-1]


def test_identity_is_pointed_at_ldap_from_its_page_and_check_connection_answers_there(
    slapd, admin_client, admin_user, settings
):
    settings.BACKEND_ALLOWED_HOSTS = [f"127.0.0.1:{slapd.port}"]
    params = slapd.params()
    response = post(
        admin_client,
        "identity",
        adapter="ldap",
        url=slapd.url,
        param_base_dn=params["base_dn"],
        param_bind_dn=params["bind_dn"],
    )
    assert response.status_code == 302, response.content.decode()
    identity = ToolServer.objects.get(name="identity")
    assert (identity.adapter, identity.url, identity.params["base_dn"]) == ("ldap", slapd.url, params["base_dn"])
    administration.set_credential(identity, admin_user, secret=slapd.service_password)
    message = checked_on_the_page(admin_client, "identity")
    assert message.startswith(f"Check connection: reached 127.0.0.1:{slapd.port}"), message


def test_an_ldap_url_off_the_allow_list_is_refused_on_the_default_ldap_port(slapd, admin_client, settings):
    settings.BACKEND_ALLOWED_HOSTS = ["directory.example.org:636"]
    response = post(admin_client, "identity", adapter="ldap", url="ldap://directory.example.org")
    assert response.status_code == 400
    assert any("directory.example.org:389" in error for error in errors_of(response.content.decode(), "url"))
    response = post(admin_client, "identity", adapter="lab", url="ldap://directory.example.org")
    assert response.status_code == 400  # an HTTP adapter takes no ldap:// URL
    assert errors_of(response.content.decode(), "url") == [
        "Enter the backend's base URL, e.g. https://edr.example.com/api"
    ]


@pytest.mark.parametrize(
    "server, adapter, field, value, named",
    [
        ("identity", "ldap", "base_dn", "people, not a DN", "Base DN"),
        ("identity", "ldap", "bind_dn", "gatehouse", "Bind DN"),
        ("identity", "active-directory", "base_dn", "=Users", "Base DN"),
        ("intel", "taxii", "collection_id", "../collections", "Collection ID"),
        ("intel", "taxii", "api_root", "feeds/../admin", "API root"),
    ],
)
def test_a_parameter_the_adapter_refuses_is_named_beside_its_field_and_by_the_administration_service(
    server, adapter, field, value, named, admin_client, admin_user, settings
):
    settings.BACKEND_ALLOWED_HOSTS = ["backend.example.org:389", "backend.example.org:443"]
    url = "ldap://backend.example.org" if server == "identity" else "https://backend.example.org"
    good = {"base_dn": "ou=people,dc=example,dc=org", "bind_dn": "cn=gatehouse,dc=example,dc=org"}
    if server == "intel":
        good = {"collection_id": "indicators", "api_root": "feeds"}
    response = post(
        admin_client,
        server,
        adapter=adapter,
        url=url,
        **{f"param_{name}": v for name, v in (good | {field: value}).items()},
    )
    assert response.status_code == 400
    (error,) = errors_of(response.content.decode(), f"param_{field}")
    assert error.startswith(named), error
    assert value not in error

    row = ToolServer.objects.get(name=server)
    with pytest.raises(administration.Refused) as refused:
        administration.update_server(row, admin_user, {"adapter": adapter, "url": url, "params": good | {field: value}})
    assert str(refused.value).startswith(named) and value not in str(refused.value)
    assert ToolServer.objects.get(name=server).adapter != adapter  # nothing was saved


def test_check_connection_names_a_stored_parameter_that_no_longer_passes(admin_client, admin_user, settings):
    """A value stored before its adapter checked it (an upgrade tightened the check): the server
    cannot start, and Check connection names the parameter, not only the adapter."""
    settings.BACKEND_ALLOWED_HOSTS = ["directory.example.org:389"]
    identity = ToolServer.objects.get(name="identity")
    administration.update_server(
        identity,
        admin_user,
        {
            "adapter": "ldap",
            "url": "ldap://directory.example.org",
            "params": {"base_dn": "ou=people,dc=example,dc=org", "bind_dn": "cn=gatehouse,dc=example,dc=org"},
        },
    )
    administration.set_credential(ToolServer.objects.get(name="identity"), admin_user, secret="bind-password")
    ToolServer.objects.filter(name="identity").update(params={"base_dn": "people, not a DN", "bind_dn": "cn=gatehouse"})
    result = check_connection("identity")
    assert result["ok"] is False
    assert result["detail"].startswith("adapter 'ldap': Base DN: "), result
    assert "people, not a DN" not in result["detail"]
    assert "Base DN: " in checked_on_the_page(admin_client, "identity")


def test_intel_is_pointed_at_misp_from_its_page_and_check_connection_answers_there(
    misp_server, admin_client, admin_user, settings
):
    settings.BACKEND_ALLOWED_HOSTS = [f"127.0.0.1:{misp_server.port}"]
    assert post(admin_client, "intel", adapter="misp", url=misp_server.url).status_code == 302
    administration.set_credential(ToolServer.objects.get(name="intel"), admin_user, secret=API_KEY)
    message = checked_on_the_page(admin_client, "intel")
    assert message == f"Check connection: reached 127.0.0.1:{misp_server.port}; MISP 2.4.142, API key accepted"
