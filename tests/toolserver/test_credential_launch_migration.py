"""Migration 0006 binds an external server's credentials to the launch it has (every earlier change of it
revoked them): they keep working after the upgrade, and stop at the first change of the command after it."""

import pytest

from tests.migrations import back_to, forward_to_latest
from toolserver import config
from toolserver.models import ToolServer

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE = [("toolserver", "0005_external_servers")]


def test_an_external_servers_credential_stays_usable_and_is_bound_to_its_launch():
    old = back_to(BEFORE)
    server = old.get_model("toolserver", "ToolServer").objects.create(
        name="memory",
        kind="external",
        adapter="mcp-stdio",
        command="node",
        args=["server.js"],
        credential_env="MEMORY_TOKEN",
        rate_limit_calls=60,
        rate_limit_window_s=60,
    )
    credential = old.get_model("toolserver", "Credential").objects.create(
        server=server, kind="reference", reference="file:memory.key", adapter="mcp-stdio", set_by="ada"
    )
    server.credential = credential
    server.save()

    forward_to_latest()

    upgraded = ToolServer.objects.select_related("credential").get(name="memory")
    assert config.binding_of(upgraded).credential_ref == "file:memory.key"
    upgraded.command = "/usr/bin/env"
    assert config.binding_of(upgraded).credential_ref == ""
