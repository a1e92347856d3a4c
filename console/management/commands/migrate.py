"""Django's migrate, which first makes sure it can reach the database."""

from django.core.management.commands import migrate

from console.environment import ConfigError, database_problem


class Command(migrate.Command):
    def handle(self, *args, **options):
        # Through the pool, an unreachable database is found only once the pool's timeout
        # (GATEHOUSE_DB_POOL_TIMEOUT_S) has passed, and then said only to have been waited for.
        problem = database_problem()
        if problem:
            raise ConfigError("DATABASE_URL", f"cannot use the database ({problem})")
        return super().handle(*args, **options)
