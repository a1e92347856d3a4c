"""An adapter's declared parameters, from the server's page to the adapter's constructor.

The intel server is pointed at a vendor adapter that declares a required plain parameter with a
pattern, an optional one with a validator, and a required secret one (tests/toolserver/vault.py).
The page shows and checks them; the plain ones are stored on the row, the secret one sealed and
shown only by name; pointing the server elsewhere revokes it as it revokes the credential; and the
launcher's environment carries it, unsealed, only to the server's own process.
"""

import json

import pytest
from django.test import Client
from django.urls import reverse

from console.manage import administration
from core.roles import ADMIN
from investigations.models import AuditRecord
from tests.console.test_administration import server_form
from toolserver import launch
from toolserver.adapters.base import ParamError
from toolserver.config import binding_of
from toolserver.credentials import KEY_VARIABLE
from toolserver.models import ToolServer
from toolserver.servers.__main__ import CannotStart, backend_from
from toolserver.supervisor import launch_config

pytestmark = pytest.mark.django_db

SECRET = "vault-api-secret-canary-5f2d9c71"


@pytest.fixture
def admin_client(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


def post(client, **changes):
    intel = ToolServer.objects.get(name="intel")
    return client.post(reverse("manage:server", args=["intel"]), server_form(intel, **changes))


def changes_recorded() -> list[dict]:
    return [
        {"what": record.outcome, **record.extra}
        for record in AuditRecord.objects.filter(kind="admin_change", server="intel").order_by("seq")
    ]


def test_the_page_shows_the_adapters_parameters_and_refuses_bad_values_naming_the_field(vault_adapter, admin_client):
    response = post(
        admin_client, adapter="vault", param_collection="Not Valid", param_region="eu west", param_api_secret=""
    )
    assert response.status_code == 400
    page = response.content.decode()
    for field in ("param_collection", "param_region", "param_api_secret"):
        assert f'data-field="{field}"' in page
    assert "Collection is not in the expected form: lower-case, e.g. ioc-main" in page
    assert "The region takes no spaces." in page
    assert "API secret is required." in page
    assert ToolServer.objects.get(name="intel").adapter == "lab"  # nothing saved


def test_plain_parameters_are_stored_and_a_secret_one_sealed_recorded_by_name_only(vault_adapter, admin_client):
    response = post(
        admin_client, adapter="vault", param_collection="ioc-main", param_region="", param_api_secret=SECRET
    )
    assert response.status_code == 302
    intel = ToolServer.objects.get(name="intel")
    assert (intel.adapter, intel.params, intel.secret_params_set) == (
        "vault",
        {"collection": "ioc-main", "region": ""},
        ["api_secret"],
    )
    assert SECRET not in json.dumps(intel.secret_params)
    recorded = changes_recorded()
    assert recorded[-1] == {
        "what": "secret_params_set",
        "before": {"secret_params": []},
        "after": {"secret_params": ["api_secret"], "set_now": ["api_secret"]},
    }
    assert recorded[0]["after"] == {"adapter": "vault", "params": {"collection": "ioc-main", "region": ""}}
    assert SECRET not in json.dumps(recorded)
    page = admin_client.get(reverse("manage:server", args=["intel"])).content.decode()
    assert SECRET not in page and "Set; leave blank to keep it." in page and 'value="ioc-main"' in page

    # Left blank, the secret is kept; a plain one changes alone.
    assert post(admin_client, param_collection="ioc-2", param_region="eu-west", param_api_secret="").status_code == 302
    intel.refresh_from_db()
    assert intel.params == {"collection": "ioc-2", "region": "eu-west"} and intel.secret_params_set == ["api_secret"]
    assert changes_recorded()[-1]["what"] == "server_changed"


def test_pointing_the_server_elsewhere_revokes_the_secret_parameters_like_the_credential(
    vault_adapter, admin_client, settings
):
    settings.BACKEND_ALLOWED_HOSTS = ["vault.example"]
    post(admin_client, adapter="vault", param_collection="ioc-main", param_region="", param_api_secret=SECRET)
    response = post(
        admin_client, url="https://vault.example/api", param_collection="ioc-main", param_region="", param_api_secret=""
    )
    assert response.status_code == 400  # required again: the one set was for the old URL
    assert "API secret is required." in response.content.decode()

    intel = ToolServer.objects.get(name="intel")
    administration.update_server(intel, intel_admin(), {"url": "https://vault.example/api"})
    intel.refresh_from_db()
    assert intel.secret_params == {}
    assert changes_recorded()[-1] == {
        "what": "secret_params_unset",
        "before": {"secret_params": ["api_secret"]},
        "after": {"secret_params": [], "because": "the server now points elsewhere"},
    }


def point_intel_at_vault_example(user) -> None:
    vault = {"adapter": "vault", "url": "https://vault.example/api", "params": {"collection": "ioc"}}
    administration.update_server(ToolServer.objects.get(name="intel"), user, vault)


def test_a_secret_parameter_set_while_another_admin_saves_the_server_pointed_elsewhere_is_cleared(
    vault_adapter, admin_user, make_user, settings
):
    """Admin B's page read the server before admin A typed the vendor's secret for vault.example; B's save points
    it at elsewhere.example. Decided on B's copy (no secret then), nothing was cleared: the process talking to
    elsewhere.example got vault.example's secret."""
    settings.BACKEND_ALLOWED_HOSTS = ["vault.example", "elsewhere.example"]
    point_intel_at_vault_example(admin_user)
    seen_by_bea = ToolServer.objects.get(name="intel")  # B's request reads the row
    administration.update_server(
        ToolServer.objects.get(name="intel"), admin_user, {"secret_params": {"api_secret": SECRET}}
    )

    administration.update_server(seen_by_bea, make_user("bea", ADMIN), {"url": "https://elsewhere.example/api"})

    assert ToolServer.objects.get(name="intel").secret_params == {}
    assert changes_recorded()[-1] == {
        "what": "secret_params_unset",
        "before": {"secret_params": ["api_secret"]},
        "after": {"secret_params": [], "because": "the server now points elsewhere"},
    }
    handed = launch_config("intel").environment()
    assert handed["GATEHOUSE_BACKEND_URL"] == "https://elsewhere.example/api"
    assert launch.SEALED_PARAMS_VARIABLE not in handed


def test_a_secret_parameter_is_not_sent_where_it_was_not_set_for_even_when_the_row_is_changed_behind_the_service(
    vault_adapter, admin_user, admin_client, settings
):
    """As a credential (Credential.bound_to): a server pointed elsewhere by a path that clears nothing (a bug
    elsewhere, a database edit) must not hand the secret set for vault.example to elsewhere.example."""
    settings.BACKEND_ALLOWED_HOSTS = ["vault.example", "elsewhere.example"]
    point_intel_at_vault_example(admin_user)
    administration.update_server(
        ToolServer.objects.get(name="intel"), admin_user, {"secret_params": {"api_secret": SECRET}}
    )
    assert launch.SEALED_PARAMS_VARIABLE in launch_config("intel").environment()  # where it was set for, it goes

    ToolServer.objects.filter(name="intel").update(url="https://elsewhere.example/api")

    assert binding_of("intel").sealed_params == ""
    assert launch.SEALED_PARAMS_VARIABLE not in launch_config("intel").environment()
    page = admin_client.get(reverse("manage:server", args=["intel"])).content.decode()
    assert "Set; leave blank to keep it." not in page  # asked for again, for where it points now


def intel_admin():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username="ada")


def test_a_delegated_manager_sees_and_sets_no_parameters(vault_adapter, admin_client, make_user):
    post(admin_client, adapter="vault", param_collection="ioc-main", param_region="", param_api_secret=SECRET)
    ops = make_user("intel-ops")
    intel = ToolServer.objects.get(name="intel")
    administration.grant(intel_admin(), "manage_toolserver", intel, ops)
    client = Client()
    client.force_login(ops)
    page = client.get(reverse("manage:server", args=["intel"])).content.decode()
    assert "param_" not in page
    with pytest.raises(Exception, match="Only admins"):
        administration.update_server(intel, ops, {"params": {"collection": "other", "region": ""}})


def test_the_parameters_reach_the_adapters_constructor_and_the_secret_only_the_servers_own_process(
    vault_adapter, admin_client, settings
):
    post(admin_client, adapter="vault", param_collection="ioc-main", param_region="eu-west", param_api_secret=SECRET)
    administration.set_credential(ToolServer.objects.get(name="intel"), intel_admin(), secret="vault-key")

    # What the worker hands the launcher: the secret still sealed, with the key that opens it.
    handed = launch_config("intel").environment()
    assert SECRET not in json.dumps(handed) and handed[KEY_VARIABLE]
    assert json.loads(handed["GATEHOUSE_BACKEND_PARAMS"]) == {"collection": "ioc-main", "region": "eu-west"}
    # What the launcher hands the server: unsealed, without the key.
    server_env = launch.server_environment(handed)
    assert KEY_VARIABLE not in server_env and launch.SEALED_PARAMS_VARIABLE not in server_env
    assert json.loads(server_env[launch.SECRET_PARAMS_VARIABLE]) == {"api_secret": SECRET}
    # What the server builds: the adapter with its parameters; the secrets leave the environment.
    backend = backend_from(server_env)
    assert isinstance(backend, vault_adapter)
    assert (backend.param("collection"), backend.param("region"), backend.param("api_secret")) == (
        "ioc-main",
        "eu-west",
        SECRET,
    )
    assert launch.SECRET_PARAMS_VARIABLE not in server_env and "GATEHOUSE_BACKEND_KEY" not in server_env
    assert SECRET not in repr(backend)

    # The other servers' processes get none of it.
    for other in ("siem", "edr", "identity"):
        assert SECRET not in json.dumps(launch_config(other).environment())


def test_a_server_whose_parameters_do_not_fit_its_adapter_does_not_start_and_says_which(vault_adapter):
    environ = {
        "GATEHOUSE_SERVER": "intel",
        "GATEHOUSE_ADAPTER": "vault",
        "GATEHOUSE_BACKEND_URL": "http://vault",
        "GATEHOUSE_BACKEND_PARAMS": json.dumps({"collection": "Bad Value", "colour": "blue"}),
    }
    with pytest.raises(CannotStart) as refused:
        backend_from(environ)
    assert str(refused.value) == (
        "adapter 'vault': 'colour' is not a parameter of this adapter; "
        "Collection is not in the expected form: lower-case, e.g. ioc-main; API secret is required."
    )
    assert "Bad Value" not in str(refused.value)
    with pytest.raises(ParamError):
        vault_adapter(url="http://vault", credential="", timeout_s=1, params={"collection": "ok", "api_secret": " "})
