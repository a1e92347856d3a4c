"""The lab's estate, seeded for a test at a fraction of `estate.seed()`'s cost.

`estate.seed()` builds about 4,000 rows and inserts them through the ORM: 0.2-0.3 s, paid by each of
the 550 tests a mode that use the lab. The rows of a seed are kept in copies of the estate's tables
(plain tables beside them, which a flush leaves alone), and a test whose seed would come within
FRESH_S of the last one gets those rows back by one INSERT … SELECT a table instead. FRESH_S keeps
the estate as recent as a test of that length finds its own: the stories are timed against
`seeded_at()`, which comes back with them.
"""

import time

from django.db import connection, transaction

from tests import table_copies
from toolserver.lab import estate, faults
from toolserver.lab.models import LabFault

FRESH_S = 30
KIND = "seeded"  # its copies' names: seeded_copy_<table>
SEEDED = estate.SEEDED
# The faults, which a seed writes anew as "none", are written again after each copy comes back.
EMPTIED = (*estate.EMPTIED, LabFault)
_copied_at: dict[str, float] = {}  # the test database's name -> when its copies were made


def refresh() -> None:
    """Make the copies anew if they are older than FRESH_S, leaving the tables empty: for a fixture
    that runs before the test's transaction (which would take copies made in it back with it)."""
    if not _fresh() and not connection.in_atomic_block:
        estate.seed()
        _copy()
        _empty()


def seed() -> None:
    """Leave the estate as `estate.seed()` does: seeded anew, or as seeded at most FRESH_S ago."""
    if _fresh():
        _restore()
    else:
        estate.seed()
        if not connection.in_atomic_block:
            _copy()


def _fresh() -> bool:
    return time.monotonic() - _copied_at.get(connection.settings_dict["NAME"], float("-inf")) < FRESH_S


def _copy() -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        for model in SEEDED:
            table_copies.keep(cursor, model, KIND)
    _copied_at[connection.settings_dict["NAME"]] = time.monotonic()


def _empty() -> None:
    with transaction.atomic():
        for model in (*EMPTIED, *reversed(SEEDED)):
            model.objects.all().delete()


def _restore() -> None:
    with transaction.atomic():
        _empty()
        with connection.cursor() as cursor:
            for model in SEEDED:
                cursor.execute(table_copies.put_back(model, KIND))
        faults.clear()
