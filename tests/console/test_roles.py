from django.contrib.auth.models import Group

from console.navigation import items_for
from core.roles import ADMIN, ANALYST, MANAGER, ROLE_PERMISSIONS, has_role


def test_the_three_roles_exist_as_groups(db):
    assert set(Group.objects.values_list("name", flat=True)) >= {ANALYST, MANAGER, ADMIN}


def test_each_role_holds_exactly_its_model_permissions(db):
    for role, expected in ROLE_PERMISSIONS.items():
        held = {
            f"{app}.{codename}"
            for app, codename in Group.objects.get(name=role).permissions.values_list(
                "content_type__app_label", "codename"
            )
        }
        assert held == set(expected), role


def test_admin_role_grants_user_management_and_analyst_does_not(analyst, admin_user):
    assert admin_user.has_perm("auth.change_user")
    assert not analyst.has_perm("auth.change_user")
    assert has_role(analyst, ANALYST) and not has_role(analyst, ADMIN)


def test_navigation_follows_the_role(analyst, manager, admin_user):
    def labels(user):
        return [item["label"] for item in items_for(user)]

    assert "Administration" in labels(admin_user)
    assert "Administration" not in labels(analyst)
    assert "Administration" not in labels(manager)
