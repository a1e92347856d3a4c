"""The three roles, as Django groups, and the model permissions each one holds.

The groups are created by a migration and kept, with their permissions, after every
migrate (a permission row exists only once its app has migrated; a test flush empties the
tables and signals post_migrate again). Object-level
permissions (which tool a user may approve, which investigation a team may see) are
django-guardian's and are granted per object, not here.
"""

ANALYST = "analyst"
MANAGER = "manager"
ADMIN = "admin"
ROLES = (ANALYST, MANAGER, ADMIN)

# "app_label.codename" per role. Later apps add theirs to this table, and only here.
ROLE_PERMISSIONS: dict[str, list[str]] = {
    ANALYST: [
        "investigations.view_investigation",
        "investigations.view_alert",
        "investigations.add_alert",
    ],
    MANAGER: [
        "investigations.view_investigation",
        "investigations.view_alert",
        "investigations.view_auditrecord",
    ],
    ADMIN: [
        "auth.view_user",
        "auth.add_user",
        "auth.change_user",
        "auth.view_group",
        "investigations.view_integration",
        "investigations.change_integration",  # revoking a token
        "investigations.view_auditrecord",
    ],
}


def roles_of(user) -> set[str]:
    if not user.is_authenticated:
        return set()
    if not hasattr(user, "_gatehouse_roles"):
        user._gatehouse_roles = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    return user._gatehouse_roles


def has_role(user, *roles: str) -> bool:
    return bool(roles_of(user) & set(roles))


def grant_role_permissions(app_config, using="default", apps=None, **kwargs):
    """post_migrate receiver: make sure each role's group exists and holds its permissions.

    Runs for the console app, the last installed: by then Django's own receiver, connected before
    this one, has written the permission rows of every app (the console's included)."""
    from django.contrib.auth.models import Group, Permission
    from django.db.models import Q

    if app_config.label != "console":
        return
    names = {name for names in ROLE_PERMISSIONS.values() for name in names}
    wanted = Q()
    for name in names:
        app_label, codename = name.split(".")
        wanted |= Q(content_type__app_label=app_label, codename=codename)
    permissions = {
        f"{app_label}.{codename}": pk
        for pk, app_label, codename in Permission.objects.using(using)
        .filter(wanted)
        .values_list("pk", "content_type__app_label", "codename")
    }
    for role, role_names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=role)
        group.permissions.add(*(permissions[name] for name in role_names if name in permissions))
