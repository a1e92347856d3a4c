"""Every change that can end someone's access tells that person's open sockets (core.sockets),
wherever it is made: the pages, the Django admin, a shell, a future role page."""

from django.contrib.auth import get_user_model, user_logged_out
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from guardian.models import GroupObjectPermission, UserObjectPermission

from core.sockets import tell_sockets_of

# pre_clear, not post_clear: once cleared, nobody knows who was in it.
M2M_ACTIONS = {"post_add", "post_remove", "pre_clear"}


def signed_out(sender, request, user, **kwargs):
    if user is not None and getattr(request, "session", None) is not None:
        tell_sockets_of([user.pk], signed_out_session=request.session.session_key)


def user_changed(sender, instance, created=False, update_fields=None, **kwargs):
    """Saved (deactivated, password or superuser changed) or deleted."""
    # A new user has no sockets yet, and a sign-in elsewhere (last_login) takes nothing away.
    if not created and update_fields != frozenset({"last_login"}):
        tell_sockets_of([instance.pk])


def users_changed(sender, instance, action, reverse, pk_set, **kwargs):
    """User.groups (a role, a team) or User.user_permissions, changed from either side."""
    if action not in M2M_ACTIONS:
        return
    if not reverse:
        tell_sockets_of([instance.pk])
    elif action == "pre_clear":
        tell_sockets_of(list(instance.user_set.values_list("pk", flat=True)))
    else:
        tell_sockets_of(pk_set)


def group_permissions_changed(sender, instance, action, reverse, pk_set, **kwargs):
    """Group.permissions, from either side: every member of each group concerned."""
    if action not in M2M_ACTIONS:
        return
    if not reverse:
        groups = [instance.pk]
    elif action == "pre_clear":
        groups = list(instance.group_set.values_list("pk", flat=True))
    else:
        groups = pk_set
    tell_sockets_of(members_of(groups))


def group_deleted(sender, instance, **kwargs):
    tell_sockets_of(members_of([instance.pk]))  # its memberships are deleted without a signal


def user_grant_changed(sender, instance, **kwargs):
    tell_sockets_of([instance.user_id])


def group_grant_changed(sender, instance, **kwargs):
    tell_sockets_of(members_of([instance.group_id]))


def members_of(group_ids) -> list[int]:
    return list(get_user_model().objects.filter(groups__in=list(group_ids)).values_list("pk", flat=True).distinct())


def connect() -> None:
    user = get_user_model()
    user_logged_out.connect(signed_out, dispatch_uid="gatehouse-sockets-signed-out")
    for signal in (post_save, post_delete):
        signal.connect(user_changed, sender=user, dispatch_uid="gatehouse-sockets-user")
        signal.connect(user_grant_changed, sender=UserObjectPermission, dispatch_uid="gatehouse-sockets-user-grant")
        signal.connect(group_grant_changed, sender=GroupObjectPermission, dispatch_uid="gatehouse-sockets-group-grant")
    m2m_changed.connect(users_changed, sender=user.groups.through, dispatch_uid="gatehouse-sockets-groups")
    m2m_changed.connect(
        users_changed, sender=user.user_permissions.through, dispatch_uid="gatehouse-sockets-user-perms"
    )
    m2m_changed.connect(
        group_permissions_changed, sender=Group.permissions.through, dispatch_uid="gatehouse-sockets-group-perms"
    )
    pre_delete.connect(group_deleted, sender=Group, dispatch_uid="gatehouse-sockets-group-deleted")
