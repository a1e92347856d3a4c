"""Migration tests: the database taken back to a migration, rows made with the models as they were, then
forward to the latest, as an upgrade runs them."""

from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def back_to(target: list[tuple[str, str]]):
    """Migrate back to `target` ([(app, migration)]); the apps registry of that state (its historical models)."""
    executor = MigrationExecutor(connection)
    executor.migrate(target)
    return executor.loader.project_state(target).apps


def forward_to_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()  # the graph again: the one above was read before migrating back
    executor.migrate(executor.loader.graph.leaf_nodes())
