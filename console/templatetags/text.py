"""Template filters for text others chose (an alert's title, the agent's reason, a backend's outcome)."""

from django import template

from core import text

register = template.Library()


@register.filter
def as_read(value) -> str:
    """What reorders or hides text shown as its escapes (core.text): what is read is what was sent. Line breaks
    and tabs stay: a page draws them (a <pre>'s lines) or folds them into a space, hiding nothing."""
    return text.as_read(str(value), keep="\n\t")
