"""Migration console 0004 ends the sessions signed in before it: they had no fixed end (each save moved it on),
and when they were signed in is not kept."""

import pytest
from django.contrib.sessions.models import Session
from django.urls import reverse

from tests.migrations import back_to, forward_to_latest

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_session_from_before_the_upgrade_ends_and_its_person_signs_in_again(client, manager):
    client.force_login(manager)
    assert client.get("/").status_code == 200
    back_to([("console", "0003_sso_identities")])
    assert Session.objects.exists()

    forward_to_latest()

    assert not Session.objects.exists()
    assert client.get("/")["Location"].startswith(reverse("login"))
