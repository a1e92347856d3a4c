"""A model's rows kept in a plain copy of its table, beside Django's (a flush leaves it alone), and put back
by one INSERT … SELECT: what tests/seeded_estate.py does for the lab's estate and tests/flushing.py for the
content types and permissions, each under a name of its own."""

from django.db import connection


def copy_of(model, kind: str) -> str:
    return connection.ops.quote_name(f"{kind}_copy_{model._meta.db_table}")


def keep(cursor, model, kind: str) -> None:
    """The model's rows as they are now, in its `kind` copy (made anew)."""
    table = connection.ops.quote_name(model._meta.db_table)
    cursor.execute(f"DROP TABLE IF EXISTS {copy_of(model, kind)}")
    cursor.execute(f"CREATE TABLE {copy_of(model, kind)} AS SELECT * FROM {table}")  # noqa: S608 (table names)


def put_back(model, kind: str) -> str:
    """The statement that inserts the `kind` copy's rows, with their ids, into the model's table. It names
    the columns, so a migration test that leaves them in another order puts the rows back whole."""
    ops = connection.ops
    columns = ", ".join(ops.quote_name(field.column) for field in model._meta.concrete_fields)
    return (
        f"INSERT INTO {ops.quote_name(model._meta.db_table)} ({columns}) SELECT {columns} FROM {copy_of(model, kind)}"  # noqa: S608
    )
