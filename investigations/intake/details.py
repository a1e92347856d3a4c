"""An alert's `details`: free-form JSON from the source, bounded in shape and shown in bounded size.

Intake refuses details nested deeper than MAX_DEPTH or holding more than MAX_NODES values
(investigations.intake.services.AlertIn). Pretty-printing indents each line by its depth, so an unbounded
depth makes a page quadratic in the body (an 18 KB nested body once made a 16 MB page);
`pretty` indents only details within the limits and prints anything else (a row stored before
them) compactly, in size linear in the body.
"""

import json

from core.inputs import UNSTORABLE_SAID, unstorable_in

MAX_DEPTH = 16  # levels of objects and arrays, the details object itself being the first
MAX_NODES = 10_000  # values of any kind, objects and arrays included


def shape(value) -> tuple[int, int]:
    """(depth, nodes) of a JSON value, measured without recursion, stopping once past a limit."""
    depth = nodes = 0
    pending = [(value, 1)]
    while pending and depth <= MAX_DEPTH and nodes <= MAX_NODES:
        item, level = pending.pop()
        nodes += 1
        if isinstance(item, dict):
            depth = max(depth, level)
            pending.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            depth = max(depth, level)
            pending.extend((child, level + 1) for child in item)
    return depth, nodes


def problem(value) -> str | None:
    """Why `value` may not be an alert's details, or None."""
    if unstorable_in(value) is not None:  # jsonb cannot hold one
        return UNSTORABLE_SAID
    depth, nodes = shape(value)
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    if nodes > MAX_NODES:
        return f"more than {MAX_NODES} values"
    return None


def pretty(value) -> str:
    """The details as text for a page (shown autoescaped)."""
    if problem(value) is None:
        return json.dumps(value, indent=2, ensure_ascii=False)
    try:
        return json.dumps(value, ensure_ascii=False)  # the C encoder: linear, no indentation
    except RecursionError:
        return "(too deeply nested to show)"
