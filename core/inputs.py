"""Input types shared by the API's schemas: what both databases can store, said in the OpenAPI schema.

PostgreSQL refuses a time-zone offset beyond ±15:59 and a NUL character in text; SQLite stores
both. Refusing them here makes the two modes answer alike (400 naming the field, never 500).
"""

import re
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, WithJsonSchema

# Years 1970-2999, and an offset PostgreSQL stores: nothing converts out of datetime's range either.
_DATE = r"(19[7-9][0-9]|2[0-9]{3})-[0-9]{2}-[0-9]{2}"
_OFFSET = r"(Z|[+-](0[0-9]|1[0-5]):[0-5][0-9])"
DATE_TIME = rf"^{_DATE}T[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(\.[0-9]{{1,6}})?{_OFFSET}$"
# The pages' filters come from <input type="datetime-local">: no seconds, no offset (then UTC).
LOOSE_DATE_TIME = rf"^{_DATE}T[0-9]{{2}}:[0-9]{{2}}(:[0-9]{{2}}(\.[0-9]{{1,6}})?)?{_OFFSET}?$"
MAX_OFFSET = timedelta(hours=15, minutes=59)


def _text_matching(pattern: str, message: str):
    compiled = re.compile(pattern)

    def check(value):
        if isinstance(value, datetime):  # from Python (a form): checked after parsing
            return value
        if not (isinstance(value, str) and compiled.match(value)):
            raise ValueError(message)
        return value

    return check


def _storable(value: datetime) -> datetime:
    offset = value.utcoffset()
    if offset is not None and abs(offset) > MAX_OFFSET:
        raise ValueError("time-zone offset must be within ±15:59")
    if not 1970 <= value.year <= 2999:
        raise ValueError("must be between 1970 and 2999")
    return value


def _date_time(base: type, schema: dict, message: str):
    return Annotated[
        base,
        BeforeValidator(_text_matching(schema["pattern"], message)),
        AfterValidator(_storable),
        WithJsonSchema({"type": "string", **schema}),
    ]


# An integer (a Unix time, which pydantic would take) is refused: the schema says a string.
DateTime = _date_time(
    AwareDatetime,
    {"format": "date-time", "pattern": DATE_TIME},
    "must be a date and time with its time zone, like 2026-11-25T09:30:00Z",
)
# Not `format: date-time`, which needs seconds and an offset.
FilterDateTime = _date_time(datetime, {"pattern": LOOSE_DATE_TIME}, "must be a date and time like 2026-11-25T09:30:00Z")


# What neither database stores: NUL (PostgreSQL's text and jsonb), a lone surrogate (no UTF-8 for it; JSON's
# \udc00 escape parses to one).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_SAID = "must not contain a NUL character or a lone surrogate"


def unstorable_in(value, path: tuple = ()) -> tuple | None:
    """Where a character no database stores (UNSTORABLE) is in a JSON-shaped value (a key or a string), or None."""
    pending = [(value, path)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            if UNSTORABLE.search(item):
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and UNSTORABLE.search(key):
                    return (*where, key)
                pending.append((child, (*where, key)))
        elif isinstance(item, (list, tuple)):
            pending.extend((child, (*where, index)) for index, child in enumerate(item))
    return None


def each_string(value, change):
    """`value` (JSON-shaped) with `change` applied to every string in it, its keys too."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {each_string(key, change): each_string(child, change) for key, child in value.items()}
    if isinstance(value, (list, tuple)):
        return [each_string(child, change) for child in value]
    return value


def storable(value):
    """`value` (JSON-shaped) with each character no database stores (UNSTORABLE) replaced by U+FFFD, in its
    keys and strings: for text we keep rather than refuse (a backend's log line, a model's output), which
    would otherwise fail the write that keeps it, and with it the call's audit record."""
    return each_string(value, lambda text: UNSTORABLE.sub("\ufffd", text))
