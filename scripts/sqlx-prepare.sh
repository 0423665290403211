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
trap 'rm -rf "$out"' EXIT

packages=()
for crate in "${CRATES[@]}"; do
    if cargo metadata --no-deps --format-version 1 | grep -q "\"name\":\"$crate\""; then
        packages+=(-p "$crate")
    fi
done
# Force the macros to expand again, online, writing into $out.
for p in "${packages[@]}"; do [ "$p" = -p ] || cargo clean --quiet -p "$p" 2>/dev/null || true; done
SQLX_OFFLINE=false DATABASE_URL="$CONCLAVE_OWNER_DATABASE_URL" SQLX_OFFLINE_DIR="$out" \
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
