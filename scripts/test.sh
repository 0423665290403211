#!/usr/bin/env bash
# Every test Conclave has, on a fresh machine or a warm one: installs what is missing, brings up
# the local stack (PostgreSQL, Redis), then checks formatting, lints, sqlx offline data and runs
# the whole test suite against the real services. `.ci/run` calls exactly this.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
step() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }

# Build artefacts live outside the clone so a second run (or a fresh clone) is incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conclave/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
if command -v rustup >/dev/null; then
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
cargo --version

step "local stack"
scripts/stack.sh up
eval "$(scripts/stack.sh env)"

# Databases left behind by an interrupted earlier run.
psql "$CONCLAVE_OWNER_DATABASE_URL" -XAtq -c "SELECT datname FROM pg_database WHERE datname LIKE 'conclave\_test\_%'" |
    while read -r db; do psql "$CONCLAVE_OWNER_DATABASE_URL" -Xq -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; done

step "formatting"
cargo fmt --all --check

step "sqlx offline data"
scripts/sqlx-prepare.sh --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked --no-fail-fast
