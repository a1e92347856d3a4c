"""What the investigation pages and sockets read. Who may see an investigation is the model's rule
(`Investigation.objects.visible_to`), asked before anything here is read."""

from guardian.shortcuts import get_users_with_perms

from investigations.models import Event, Investigation
from investigations.models.runs import VIEW


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
