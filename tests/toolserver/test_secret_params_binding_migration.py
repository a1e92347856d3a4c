"""Migration 0007 binds a server's secret parameters to where it points (every earlier recorded change of that
cleared them): they keep reaching its process after the upgrade, and stop the moment it points elsewhere."""

import pytest

from tests.migrations import back_to, forward_to_latest
from toolserver import config
from toolserver.models import ToolServer

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE = [("toolserver", "0006_credential_launch")]
SEALED = {"api_secret": "gAAAAA-a-fernet-token"}


def test_secret_parameters_stay_usable_and_are_bound_to_where_the_server_points():
    old = back_to(BEFORE)
    old.get_model("toolserver", "ToolServer").objects.filter(name="intel").update(
        adapter="vault", url="https://vault.example/api", secret_params=SEALED
    )

    forward_to_latest()

    upgraded = ToolServer.objects.select_related("credential").get(name="intel")
    assert config.binding_of(upgraded).sealed_params == '{"api_secret": "gAAAAA-a-fernet-token"}'
    assert ToolServer.objects.get(name="identity").secret_params_for == ""  # none set: bound nowhere
    upgraded.url = "https://elsewhere.example/api"
    assert config.binding_of(upgraded).sealed_params == ""
