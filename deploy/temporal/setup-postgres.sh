#!/bin/sh
# One-shot: create Temporal's two PostgreSQL databases and bring both schemas up to the
# version this admin-tools image ships. Runs on every `docker compose up` and is safe to:
# `create` ignores an existing database, `setup-schema -v 0.0` never lowers a recorded
# version, and `update-schema` applies only missing steps. This is also how a Temporal
# upgrade migrates the schema: bump the server and admin-tools tags together.
# Adapted from temporalio/samples-server compose/scripts/setup-postgres.sh.
#
# Environment: POSTGRES_SEEDS (host), POSTGRES_USER, SQL_PASSWORD (read by temporal-sql-tool),
# DB_PORT (default 5432).
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS is required}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${SQL_PASSWORD:?SQL_PASSWORD is required}"
PORT="${DB_PORT:-5432}"
SCHEMAS=/etc/temporal/schema/postgresql/v12

sql_tool() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$PORT" -u "$POSTGRES_USER" "$@"
}

# database name, schema directory under $SCHEMAS
setup() {
  echo "preparing database $1"
  sql_tool --db "$1" create
  sql_tool --db "$1" setup-schema -v 0.0
  sql_tool --db "$1" update-schema -d "$SCHEMAS/$2/versioned"
}

setup temporal temporal
setup temporal_visibility visibility
echo "Temporal schemas are up to date"
