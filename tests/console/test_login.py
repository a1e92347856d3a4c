import pytest
from django.urls import reverse

from tests.conftest import PASSWORD


def test_anonymous_visitor_is_sent_to_login(client, db):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_login_page_renders_a_form(client, db):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="password"' in response.content and b"csrfmiddlewaretoken" in response.content


def test_wrong_password_is_refused(client, analyst):
    response = client.post(reverse("login"), {"username": "ana", "password": "nope"})
    assert response.status_code == 200
    assert b"did not match" in response.content
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("fixture, sees_admin", [("analyst", False), ("manager", False), ("admin_user", True)])
def test_each_role_sees_its_navigation(client, request, fixture, sees_admin):
    user = request.getfixturevalue(fixture)
    response = client.post(reverse("login"), {"username": user.username, "password": PASSWORD}, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-nav="home"' in page
    assert ('data-nav="admin:index"' in page) is sees_admin


def test_logout_needs_post_and_ends_the_session(client, analyst):
    client.force_login(analyst)
    assert client.get(reverse("logout")).status_code == 405
    client.post(reverse("logout"))
    assert client.get(reverse("home")).status_code == 302


def test_analyst_cannot_open_the_django_admin(client, analyst):
    client.force_login(analyst)
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
