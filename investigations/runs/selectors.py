"""Who may see which investigation, and what the pages and sockets read."""

from guardian.shortcuts import get_objects_for_user, get_users_with_perms

from investigations.models import Event, Investigation

VIEW = "investigations.view_investigation"


def sees_all_investigations(user) -> bool:
    """The analyst and manager roles (and superusers) see every investigation."""
    return user.is_authenticated and user.is_active and user.has_perm(VIEW)


def can_view(user, investigation: Investigation) -> bool:
    """A role that sees all, or a django-guardian object permission on this one (a team's)."""
    if not (user.is_authenticated and user.is_active):
        return False
    return user.has_perm(VIEW) or user.has_perm(VIEW, investigation)


def can_view_id(user, investigation_id: int) -> bool:
    investigation = Investigation.objects.filter(pk=investigation_id).first()
    return investigation is not None and can_view(user, investigation)


def visible_investigations(user):
    investigations = Investigation.objects.select_related("alert")
    if sees_all_investigations(user):
        return investigations
    if not (user.is_authenticated and user.is_active):
        return investigations.none()
    return get_objects_for_user(user, VIEW, investigations, accept_global_perms=False)


def granted_viewer_ids(investigation_id: int) -> list[int]:
    """The active users who may view this investigation through an object permission of their own or
    of a team (whoever also sees all is among them if granted; live_messages sends them one copy)."""
    investigation = Investigation.objects.filter(pk=investigation_id).first()
    if investigation is None:
        return []
    users = get_users_with_perms(investigation, with_group_users=True, only_with_perms_in=[VIEW.split(".")[1]])
    return list(users.filter(is_active=True).values_list("pk", flat=True).order_by("pk"))


def events_after(investigation_id: int, seq: int) -> list[dict]:
    return [event.as_message() for event in Event.objects.filter(investigation_id=investigation_id, seq__gt=seq)]
