#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    from django.core.management import execute_from_command_line
    from django.db import OperationalError

    from console.environment import ConfigError, exit_on_config_error

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as error:
        exit_on_config_error(error)
    except OperationalError as error:
        from django.conf import settings

        if not settings.PRODUCTION:
            raise
        # A command that could not reach the database: name the variable and why, not a traceback.
        from console.environment import database_problem

        reason = database_problem() or (str(error).strip().splitlines() or [type(error).__name__])[0]
        exit_on_config_error(ConfigError("DATABASE_URL", f"cannot use the database ({reason})"))


if __name__ == "__main__":
    main()
