#!/usr/bin/env bash
# The demo: installs PostgreSQL when it is missing, builds nplus1, and runs
# `nplus1 demo` (a throwaway PostgreSQL, the proxy, a workload with each
# pattern as commonly written and fixed, the findings). Extra arguments go to
# `nplus1 demo` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --server-only
echo "building nplus1 (the first build compiles pg_query's C code: a minute or two) ..." >&2
go build -o nplus1 ./cmd/nplus1
exec ./nplus1 demo "$@"
