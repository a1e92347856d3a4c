"""State machines written once as data: a table of the moves each state allows.

A model declares `TRANSITIONS = {state: {states it may move to}}` (a state that may stay where
it is, recording the step, lists itself); every function that moves a row calls `check` before
touching it, the pages get `as_page_data`, and a test walks every (from, to) pair against the
table (architecture rule 9 for action requests). Adding a state is one line of its table.
"""

from collections import deque
from collections.abc import Mapping, Set

Table = Mapping[str, Set[str]]


class IllegalTransition(ValueError):
    """A move the table does not allow: a bug of the caller, raised before any row is touched."""

    def __init__(self, what: str, from_state: str, to_state: str):
        self.from_state, self.to_state = from_state, to_state
        super().__init__(f"{what} may not move from {from_state or '(new)'} to {to_state}")


def allows(table: Table, from_state: str, to_state: str) -> bool:
    return to_state in table.get(from_state, ())


def check(table: Table, from_state: str, to_state: str, *, what: str) -> None:
    """Raise IllegalTransition unless `table` allows from_state -> to_state."""
    if not allows(table, from_state, to_state):
        raise IllegalTransition(what, from_state, to_state)


def final(table: Table) -> tuple[str, ...]:
    """The states nothing leaves."""
    return tuple(state for state, moves in table.items() if not moves - {state})


def reachable(table: Table, state: str) -> list[str]:
    """Every other state `state` can still become, by any number of moves, in the table's order."""
    seen, queue = set(), deque([state])
    while queue:
        for next_state in table.get(queue.popleft(), ()):
            if next_state not in seen:
                seen.add(next_state)
                queue.append(next_state)
    return [other for other in table if other in seen and other != state]


def trail(table: Table, initial: str, state: str) -> list[str]:
    """The shortest way from `initial` to `state`, both included: the states a row passed through."""
    previous: dict[str, str | None] = {initial: None}
    queue = deque([initial])
    while queue:
        current = queue.popleft()
        for next_state in table.get(current, ()):
            if next_state not in previous:
                previous[next_state] = current
                queue.append(next_state)
    if state not in previous:
        return [state]
    steps: list[str] = []
    at: str | None = state
    while at is not None:
        steps.append(at)
        at = previous[at]
    return steps[::-1]


def as_page_data(table: Table, initial: str) -> dict:
    """What a page's script needs of the machine: per state, the states it can still become and the
    trail that led to it (static/js/approvals.js; json_script'ed by templates/base.html)."""
    return {
        "initial": initial,
        "reachable": {state: reachable(table, state) for state in table},
        "trail": {state: trail(table, initial, state) for state in table},
    }
