#!/usr/bin/env bash
# bench/instr.sh — instructions per round trip of the tracker's benchmarks, counted, not timed.
#
# Runs pgwire's BenchmarkTracker sub-benchmarks under valgrind's cachegrind (one Go proc) at two
# iteration counts and prints the difference per iteration: the instructions one round trip costs,
# the runtime's share (allocation, write barriers, the collector's marking) included. The count is
# the same from one run to the next, so a change of a few percent in the evidence's cost shows here
# where bench/ab.sh, whose rounds swing by ±5% on a shared machine, cannot resolve it. It says
# nothing about cache misses (BenchmarkTrackerCold and bench/ab.sh do); instructions are not time.
#
# Usage: bench/instr.sh [--base REV] [SUB...]
# SUB: sub-benchmarks of BenchmarkTracker (default: prepared prepared-evidence simple
# simple-evidence). --base REV counts the same for git revision REV beside the working tree's.
# Needs: go, git (for --base), valgrind (Debian package valgrind).

set -euo pipefail

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

BASE=""
SUBS=()
while (($#)); do
	case $1 in
	--base) [[ $# -ge 2 ]] || die "--base needs a revision"; BASE=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	-*) die "unknown flag $1 (see --help)" ;;
	*) SUBS+=("$1"); shift ;;
	esac
done
((${#SUBS[@]})) || SUBS=(prepared prepared-evidence simple simple-evidence)
command -v go >/dev/null || die "go is not on PATH"
command -v valgrind >/dev/null || die "valgrind is not installed (Debian package valgrind)"

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$root" && go test -c -o "$work/head.test" ./pgwire) || die "cannot build pgwire's tests"
bins=(head)
if [[ -n $BASE ]]; then
	git -C "$root" rev-parse --verify -q "$BASE^{commit}" >/dev/null || die "--base $BASE is not a revision of this repository"
	mkdir "$work/base"
	git -C "$root" archive "$BASE" | tar -x -C "$work/base"
	(cd "$work/base" && go test -c -o "$work/base.test" ./pgwire) || die "cannot build pgwire's tests at $BASE"
	bins=(base head)
fi

# count BIN SUB N: the instructions of a run of N iterations.
count() {
	GOMAXPROCS=1 valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
		"$work/$1.test" -test.run '^$' -test.bench "^BenchmarkTracker\$/^$2\$" -test.benchtime "$3x" 2>&1 |
		awk '/I *refs:/ { gsub(",", "", $NF); print $NF }'
}

printf '%-6s %-24s %s\n' build benchmark instructions/op
for b in "${bins[@]}"; do
	for s in "${SUBS[@]}"; do
		lo=$(count "$b" "$s" 2000)
		hi=$(count "$b" "$s" 12000)
		[[ -n $lo && -n $hi ]] || die "no count for $b $s (is it a sub-benchmark of BenchmarkTracker?)"
		printf '%-6s %-24s %d\n' "$b" "$s" $(((hi - lo) / 10000))
	done
done
