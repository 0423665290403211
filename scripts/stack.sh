#!/usr/bin/env bash
# The local stack: PostgreSQL and Redis on loopback, the conclave database and roles, migrations.
#
#   scripts/stack.sh up       install what is missing, start both servers, create roles, migrate
#   scripts/stack.sh env      print the environment (export lines) the programs and tests use
#   scripts/stack.sh status   say what is running
#   scripts/stack.sh down     stop both servers (data is kept)
#
# Idempotent: `up` twice, or `up` while everything runs, changes nothing. Credentials are
# generated on first use into $CONCLAVE_HOME/stack.env (mode 0600), never into the repository.
set -euo pipefail

CONCLAVE_HOME="${CONCLAVE_HOME:-$HOME/.local/share/conclave}"
PG_VERSION="${CONCLAVE_PG_VERSION:-15}"
PG_CLUSTER="${CONCLAVE_PG_CLUSTER:-main}"
PG_PORT="${CONCLAVE_PG_PORT:-5432}"
REDIS_PORT="${CONCLAVE_REDIS_PORT:-6379}"
ENV_FILE="$CONCLAVE_HOME/stack.env"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '\033[1;34m[stack]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[stack] error:\033[0m %s\n' "$*" >&2; exit 1; }

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@";
    elif [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@";
    else sudo -u postgres "$@"; fi
}

apt_updated=""
apt_install() {
    if [ "$(id -u)" != 0 ]; then die "missing packages ($*) and not root: install them with apt-get"; fi
    if [ -z "$apt_updated" ]; then
        say "apt-get update"
        apt-get update -qq >/dev/null
        apt_updated=1
    fi
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_packages() {
    local missing=()
    [ -x "/usr/lib/postgresql/$PG_VERSION/bin/postgres" ] || missing+=("postgresql-$PG_VERSION")
    command -v pg_ctlcluster >/dev/null || missing+=(postgresql-common)
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
    command -v psql >/dev/null || missing+=("postgresql-client-$PG_VERSION")
    # The TURN server the call tests start on loopback (conclave_testkit::turn); not run here.
    command -v turnserver >/dev/null || missing+=(coturn)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

random_secret() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

load_env() {
    mkdir -p "$CONCLAVE_HOME"
    chmod 700 "$CONCLAVE_HOME"
    if [ ! -f "$ENV_FILE" ]; then
        (umask 077 && printf 'OWNER_PASSWORD=%s\nAPP_PASSWORD=%s\n' "$(random_secret)" "$(random_secret)" >"$ENV_FILE")
    fi
    chmod 600 "$ENV_FILE"
    # shellcheck disable=SC1090
    . "$ENV_FILE"
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }

start_postgres() {
    if [ ! -f "/etc/postgresql/$PG_VERSION/$PG_CLUSTER/postgresql.conf" ]; then
        say "creating PostgreSQL cluster $PG_VERSION/$PG_CLUSTER"
        pg_createcluster "$PG_VERSION" "$PG_CLUSTER" -p "$PG_PORT" >/dev/null
    fi
    local conf="/etc/postgresql/$PG_VERSION/$PG_CLUSTER/conf.d/conclave.conf"
    local want
    want="# Written by conclave scripts/stack.sh: loopback only.
listen_addresses = '127.0.0.1'
port = $PG_PORT
max_connections = 300
"
    if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$(printf '%s' "$want")" ]; then
        printf '%s' "$want" >"$conf"
        chmod 644 "$conf"
        if pg_ready; then say "restarting PostgreSQL for new settings"; pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" restart; fi
    fi
    if ! pg_ready; then
        say "starting PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT"
        pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
    fi
    for _ in $(seq 1 50); do pg_ready && return 0; sleep 0.2; done
    die "PostgreSQL did not become ready on 127.0.0.1:$PG_PORT"
}

psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@"; }

setup_database() {
    # The owner runs migrations and the operator, and creates test databases; conclave_app is
    # what the data plane logs in as (see migrations/*_foundation.sql).
    psql_admin -v owner_pw="$OWNER_PASSWORD" -v app_pw="$APP_PASSWORD" <<'SQL' >/dev/null
SELECT format('CREATE ROLE conclave LOGIN CREATEDB PASSWORD %L', :'owner_pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'conclave') \gexec
SELECT format('CREATE ROLE conclave_app LOGIN PASSWORD %L', :'app_pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'conclave_app') \gexec
SELECT format('ALTER ROLE conclave LOGIN CREATEDB PASSWORD %L', :'owner_pw') \gexec
SELECT format('ALTER ROLE conclave_app LOGIN PASSWORD %L', :'app_pw') \gexec
SELECT 'GRANT conclave_app TO conclave'
 WHERE NOT pg_has_role('conclave', 'conclave_app', 'MEMBER') \gexec
SELECT 'CREATE DATABASE conclave OWNER conclave'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'conclave') \gexec
SQL
}

redis_ready() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

start_redis() {
    if redis_ready; then return 0; fi
    say "starting Redis on 127.0.0.1:$REDIS_PORT"
    mkdir -p "$CONCLAVE_HOME/redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
        --dir "$CONCLAVE_HOME/redis" --pidfile "$CONCLAVE_HOME/redis/redis.pid" \
        --logfile "$CONCLAVE_HOME/redis/redis.log" --save '' --appendonly no >/dev/null
    for _ in $(seq 1 50); do redis_ready && return 0; sleep 0.1; done
    die "Redis did not become ready on 127.0.0.1:$REDIS_PORT (see $CONCLAVE_HOME/redis/redis.log)"
}

print_env() {
    load_env
    local owner="postgres://conclave:$OWNER_PASSWORD@127.0.0.1:$PG_PORT/conclave"
    local app="postgres://conclave_app:$APP_PASSWORD@127.0.0.1:$PG_PORT/conclave"
    cat <<EOV
export CONCLAVE_DATABASE_URL='$app'
export CONCLAVE_OWNER_DATABASE_URL='$owner'
export CONCLAVE_REDIS_URL='redis://127.0.0.1:$REDIS_PORT/'
export CONCLAVE_TEST_OWNER_URL='$owner'
export CONCLAVE_TEST_APP_URL='$app'
EOV
}

migrate() {
    say "applying migrations"
    (cd "$ROOT" && CONCLAVE_OWNER_DATABASE_URL="postgres://conclave:$OWNER_PASSWORD@127.0.0.1:$PG_PORT/conclave" \
        cargo run --quiet --locked -p xtask -- migrate)
}

case "${1:-up}" in
    up)
        ensure_packages
        load_env
        start_postgres
        start_redis
        setup_database
        [ "${2:-}" = "--no-migrate" ] || migrate
        say "PostgreSQL 127.0.0.1:$PG_PORT and Redis 127.0.0.1:$REDIS_PORT are up"
        ;;
    env) print_env ;;
    status)
        if pg_ready; then echo "postgres: up (127.0.0.1:$PG_PORT)"; else echo "postgres: down"; fi
        if redis_ready; then echo "redis: up (127.0.0.1:$REDIS_PORT)"; else echo "redis: down"; fi
        ;;
    down)
        if redis_ready; then redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; fi
        if pg_ready; then pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop; fi
        say "stopped"
        ;;
    *) die "unknown command '$1' (use up, env, status or down)" ;;
esac
