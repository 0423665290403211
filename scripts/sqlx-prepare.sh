#!/usr/bin/env bash
# Regenerates sqlx's offline query data (.sqlx/) from the live, migrated database, so that the
# build needs no database. With --check, fails when the committed data is stale instead.
#
# This is what `cargo sqlx prepare --workspace` does, without needing sqlx-cli installed: the
# query macros, run online with SQLX_OFFLINE_DIR set, write one file per query.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
: "${CONCLAVE_OWNER_DATABASE_URL:?run through scripts/test.sh, or eval \"\$(scripts/stack.sh env)\" first}"

# The crates whose code uses sqlx::query! macros.
CRATES=(conclave-dataplane conclave-operator)
out="$(mktemp -d)"

# A scratch database migrated from this checkout's migrations: the macros describe queries
# against exactly this tree's schema, whatever state the shared development database is in.
scratch="conclave_sqlx_$$"
base="${CONCLAVE_OWNER_DATABASE_URL%/*}"
scratch_url="$base/$scratch"
PGOPTIONS=--client-min-messages=warning psql "$CONCLAVE_OWNER_DATABASE_URL" -Xq -c "DROP DATABASE IF EXISTS $scratch" -c "CREATE DATABASE $scratch" >/dev/null
trap 'rm -rf "$out"; psql "$CONCLAVE_OWNER_DATABASE_URL" -Xq -c "DROP DATABASE IF EXISTS $scratch WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
CONCLAVE_OWNER_DATABASE_URL="$scratch_url" cargo run --quiet --locked -p xtask -- migrate >/dev/null

packages=()
for crate in "${CRATES[@]}"; do
    if cargo metadata --no-deps --format-version 1 | grep -q "\"name\":\"$crate\""; then
        packages+=(-p "$crate")
    fi
done
# Force the macros to expand again, online, writing into $out.
for p in "${packages[@]}"; do [ "$p" = -p ] || cargo clean --quiet -p "$p" 2>/dev/null || true; done
SQLX_OFFLINE=false DATABASE_URL="$scratch_url" SQLX_OFFLINE_DIR="$out" \
    cargo check --quiet --locked --all-targets "${packages[@]}"

mkdir -p .sqlx
if [ "${1:-}" = "--check" ]; then
    if ! diff -r -q -x .keep "$out" .sqlx >/dev/null; then
        echo "sqlx offline data in .sqlx/ is stale: run scripts/sqlx-prepare.sh and commit .sqlx/" >&2
        diff -r -x .keep "$out" .sqlx >&2 || true
        exit 1
    fi
    echo "sqlx offline data is up to date ($(find "$out" -name 'query-*.json' | wc -l) queries)"
else
    find .sqlx -name 'query-*.json' -delete
    cp "$out"/query-*.json .sqlx/ 2>/dev/null || true
    touch .sqlx/.keep
    echo "wrote $(find .sqlx -name 'query-*.json' | wc -l) queries to .sqlx/"
fi
