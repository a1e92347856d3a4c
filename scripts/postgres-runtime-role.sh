#!/usr/bin/env bash
# The PostgreSQL image runs this once, when it creates the database: the runtime role the console,
# workers and beat connect as. It owns nothing; `manage.py migrate` (as the owner, with
# GATEHOUSE_DB_RUNTIME_ROLE=gatehouse_app) grants it its rights on each table.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="$GATEHOUSE_APP_DB_PASSWORD" <<'SQL'
CREATE ROLE gatehouse_app LOGIN PASSWORD :'password';
SQL
