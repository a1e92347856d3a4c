"""Template filters for text others chose (an alert's title, the agent's reason, a backend's outcome)."""

from django import template

from core import text

register = template.Library()


@register.filter
def as_read(value) -> str:
    """What reorders or hides text shown as its escapes (core.text): what is read is what was sent."""
    return text.as_read_on_page(str(value))
