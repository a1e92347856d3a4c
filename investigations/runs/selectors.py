"""What the investigation pages and sockets read. Who may see an investigation is the model's rule
(`Investigation.objects.visible_to`), asked before anything here is read."""

from investigations.models import Event


def events_after(investigation_id: int, seq: int) -> list[dict]:
    return [event.as_message() for event in Event.objects.filter(investigation_id=investigation_id, seq__gt=seq)]
