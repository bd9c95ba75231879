#!/usr/bin/env bash
# bench/ab.sh — the CPU per transaction of two nplus1 configurations, measured at the same time.
#
# Two proxies (A: nplus1 with A_FLAGS, B: the same binary, or --bin-b's, with B_FLAGS) are started side by side in
# front of one throwaway cluster, and each round runs one pgbench -S against each of them at once,
# for the same time, with the same clients. Both see the same machine in the same seconds, so the
# drift that makes sequential runs on a shared machine disagree by ±10% hits them alike: the ratio
# of their CPU per transaction is steady to a few percent where bench/run.sh's is not. The two
# proxies swap their listening ports every round, and which of them (proxy and pgbench) starts first. With --aa, B runs A's flags too: the spread of
# that ratio around 1.00 is what the method can resolve on this machine. With --pgbouncer, B is
# PgBouncer in session mode (as in bench/run.sh) instead of a second nplus1. With --perf, perf
# samples both proxies during every round and the run ends with where their CPU went: the kernel's
# and user space's shares of each, and the functions whose share differs most (A less B), averaged
# over the rounds: what a ratio of a few percent is made of.
#
# Usage: bench/ab.sh [--a FLAGS] [--b FLAGS] [--aa] [--pgbouncer] [--mode simple|prepared]
#                    [--clients N] [--duration SECONDS] [--rounds N] [--scale S] [--bin FILE]
#                    [--bin-b FILE] [--perf]
# Defaults: A "" (nplus1's defaults), B "--evidence=false" (with --bin-b: ""), prepared, 4 clients,
# 20 s, 5 rounds. --bin-b compares two builds: B runs that binary.
# Needs: go (unless --bin), PostgreSQL server binaries and pgbench (Debian package postgresql),
# for --pgbouncer, pgbouncer (Debian package pgbouncer), and for --perf, perf (Debian package
# linux-perf) and python3.

set -euo pipefail

A_FLAGS=""
B_FLAGS="--evidence=false"
MODE=prepared
CLIENTS=4
DURATION=20
ROUNDS=5
SCALE=10
BIN=""
BIN_B=""
B_SET=0
PGB=0
PERF=0

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
say() { printf 'bench: %s\n' "$*" >&2; }
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }

while (($#)); do
	case $1 in
	--a) A_FLAGS=$2; shift 2 ;;
	--b) B_FLAGS=$2; B_SET=1; shift 2 ;;
	--aa) AA=1; shift ;;
	--pgbouncer) PGB=1; shift ;;
	--perf) PERF=1; shift ;;
	--mode) MODE=$2; shift 2 ;;
	--clients) CLIENTS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--scale) SCALE=$2; shift 2 ;;
	--bin) BIN=$2; shift 2 ;;
	--bin-b) BIN_B=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
if [[ ${AA:-0} == 1 || ( -n $BIN_B && $B_SET == 0 ) ]]; then B_FLAGS=$A_FLAGS; fi
if [[ -n $BIN_B && ! -x $BIN_B ]]; then die "--bin-b $BIN_B is not an executable file"; fi
if ((PGB)) && [[ -n $BIN_B || $B_SET == 1 || ${AA:-0} == 1 ]]; then die "--pgbouncer takes the place of B: not with --b, --bin-b or --aa"; fi
[[ $MODE == simple || $MODE == prepared ]] || die "--mode must be simple or prepared, not $MODE"
for v in CLIENTS DURATION ROUNDS SCALE; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--${v,,} must be a positive integer, not ${!v}"
done

REPO=$(cd -- "$(dirname -- "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"

INITDB=$(pg_tool initdb) || die "initdb not found: install the PostgreSQL server (Debian package postgresql)"
PG_CTL=$(pg_tool pg_ctl) || die "pg_ctl not found: install the PostgreSQL server (Debian package postgresql)"
PGBENCH=$(pg_tool pgbench) || die "pgbench not found (Debian package postgresql-contrib or postgresql)"
if ((PERF)); then
	command -v perf >/dev/null || die "--perf: perf not found (Debian package linux-perf)"
	command -v python3 >/dev/null || die "--perf: python3 not found"
fi
PGBOUNCER=""
if ((PGB)); then PGBOUNCER=$(find_pgbouncer) || die "--pgbouncer: pgbouncer not found (Debian package pgbouncer)"; fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/nplus1-ab.XXXXXX")
chmod 755 "$TMP"
PG_STARTED=0
PIDS=()
cleanup() {
	local rc=$? pid
	trap '' INT TERM
	for pid in "${PIDS[@]}"; do stop_pid "$pid" proxy; done
	if ((PG_STARTED)); then as_db_user "$PG_CTL" -D "$TMP/data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true; fi
	rm -rf -- "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
for v in $(compgen -e); do
	case $v in PG*) unset "$v" ;; esac
done
export PGSSLMODE=disable PGCONNECT_TIMEOUT=10

if [[ -z $BIN ]]; then
	say "building nplus1"
	(cd -- "$REPO" && go build -o "$TMP/nplus1" ./cmd/nplus1) || die "go build ./cmd/nplus1 failed"
	BIN=$TMP/nplus1
fi
BIN_B=${BIN_B:-$BIN}

USED_PORTS=" "
PG_PORT=$(free_port)
PORTS=("$(free_port)" "$(free_port)")

mkdir -m 700 "$TMP/run"
if [[ -n $RUN_AS ]]; then chown "$RUN_AS" "$TMP/run"; fi
start_cluster "$TMP" "$PG_PORT" "$((4 * CLIENTS + 30))" bench
"$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U bench postgres >"$TMP/init.log" 2>&1 ||
	{ show_log "$TMP/init.log"; die "pgbench -i failed"; }

SETSID=()
if command -v setsid >/dev/null 2>&1; then SETSID=(setsid); fi
start() { # start PORT FLAGS BIN: an nplus1 in its own session; its pid in STARTED
	local flags
	read -r -a flags <<<"$2"
	"${SETSID[@]}" "$3" proxy --listen "127.0.0.1:$1" --upstream "127.0.0.1:$PG_PORT" --log-level warn --http "" \
		"${flags[@]}" >"$TMP/nplus1-$1.log" 2>&1 </dev/null &
	STARTED=$!
	PIDS+=("$STARTED")
	local i
	for ((i = 0; i < 150; i++)); do
		"$PGBENCH" -h 127.0.0.1 -p "$1" -U bench -S -t 1 postgres >/dev/null 2>&1 && return 0
		kill -0 "$STARTED" 2>/dev/null || { show_log "$TMP/nplus1-$1.log"; die "nplus1 $2 exited during startup"; }
		sleep 0.1
	done
	die "nplus1 $2 did not answer on 127.0.0.1:$1"
}
start_pgbouncer() { # start_pgbouncer PORT: PgBouncer in session mode in its own session; its pid in STARTED
	write_pgbouncer_ini "$TMP/run" "$1" "$PG_PORT" bench "$CLIENTS"
	exec_as_db_user "${SETSID[@]}" "$PGBOUNCER" -q "$TMP/run/pgbouncer.ini" >"$TMP/pgbouncer-$1.out" 2>&1 </dev/null &
	STARTED=$!
	PIDS+=("$STARTED")
	local i
	for ((i = 0; i < 150; i++)); do
		"$PGBENCH" -h 127.0.0.1 -p "$1" -U bench -S -t 1 postgres >/dev/null 2>&1 && return 0
		kill -0 "$STARTED" 2>/dev/null || { show_log "$TMP/pgbouncer-$1.out" "$TMP/run/pgbouncer.log"; die "pgbouncer exited during startup"; }
		sleep 0.1
	done
	die "pgbouncer did not answer on 127.0.0.1:$1"
}
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

B_NAME="$BIN_B ${B_FLAGS:-(defaults)}"
if ((PGB)); then B_NAME="$("$PGBOUNCER" --version 2>/dev/null | head -n1) (session mode)"; fi
say "A: $BIN ${A_FLAGS:-(defaults)}   B: $B_NAME   pgbench -S -M $MODE -c $CLIENTS, ${DURATION}s x $ROUNDS rounds, at the same time"
printf '%-6s %12s %12s %10s %10s %8s\n' ROUND A_US/TXN B_US/TXN A_TPS B_TPS A/B
# The two proxies of a round (on ports pa and pb) and their pgbench runs.
start_a() { start "$pa" "$A_FLAGS" "$BIN"; A=$STARTED; }
start_b() {
	if ((PGB)); then start_pgbouncer "$pb"; else start "$pb" "$B_FLAGS" "$BIN_B"; fi
	B=$STARTED
}
bench_a() {
	"$PGBENCH" -h 127.0.0.1 -p "$pa" -U bench -n -S -M "$MODE" -c "$CLIENTS" -j 1 -T "$DURATION" postgres >"$TMP/a.out" 2>&1 &
	ja=$!
}
bench_b() {
	"$PGBENCH" -h 127.0.0.1 -p "$pb" -U bench -n -S -M "$MODE" -c "$CLIENTS" -j 1 -T "$DURATION" postgres >"$TMP/b.out" 2>&1 &
	jb=$!
}
RATIOS=()
for ((r = 1; r <= ROUNDS; r++)); do
	# Swap the ports every round, and which of the two is started first (the
	# proxy and its pgbench): with A always first, A against itself (--aa)
	# read 1.01-1.03. Restart both so neither keeps an advantage.
	pa=${PORTS[$((r % 2))]} pb=${PORTS[$(((r + 1) % 2))]}
	if ((r % 2)); then start_a; start_b; else start_b; start_a; fi
	a0=$(ticks "$A") b0=$(ticks "$B")
	if ((r % 2)); then bench_a; bench_b; else bench_b; bench_a; fi
	if ((PERF)) && ((DURATION > 3)); then
		perf record -F 4999 -o "$TMP/perf-a-$r.data" -p "$A" -- sleep $((DURATION - 3)) >/dev/null 2>&1 &
		pa_perf=$!
		perf record -F 4999 -o "$TMP/perf-b-$r.data" -p "$B" -- sleep $((DURATION - 3)) >/dev/null 2>&1 &
		pb_perf=$!
	fi
	wait "$ja" || { show_log "$TMP/a.out"; die "pgbench through A failed"; }
	wait "$jb" || { show_log "$TMP/b.out"; die "pgbench through B failed"; }
	if ((PERF)) && ((DURATION > 3)); then
		wait "$pa_perf" "$pb_perf" || true
		for x in a b; do
			perf report -i "$TMP/perf-$x-$r.data" --no-children --sort sym --stdio 2>/dev/null |
				grep '%' | grep -v '^#' >"$TMP/perf-$x-$r.txt" || true
		done
	fi
	a1=$(ticks "$A") b1=$(ticks "$B")
	stop_pid "$A" nplus1; stop_pid "$B" "${B_NAME%% *}"
	PIDS=()
	na=$(awk '/actually processed/ { print $NF }' "$TMP/a.out") nb=$(awk '/actually processed/ { print $NF }' "$TMP/b.out")
	line=$(awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v na="$na" -v nb="$nb" -v hz="$HZ" -v d="$DURATION" -v r="$r" 'BEGIN {
		ca = a * 1e6 / hz / na; cb = b * 1e6 / hz / nb
		printf "%-6d %12.1f %12.1f %10.0f %10.0f %8.3f", r, ca, cb, na / d, nb / d, ca / cb }')
	printf '%s\n' "$line"
	RATIOS+=("$(awk '{ print $NF }' <<<"$line")")
done
printf '%s\n' "${RATIOS[@]}" | sort -n | awk '{ v[NR] = $1 } END {
	m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
	printf "A/B CPU per transaction: median %.3f, rounds %.3f-%.3f\n", m, v[1], v[NR] }'
if ((PERF)); then
	python3 - "$TMP" "$ROUNDS" <<'PY'
import collections, glob, re, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
def load(x):
    acc, n = collections.Counter(), 0
    for f in sorted(glob.glob(f"{tmp}/perf-{x}-*.txt")):
        n += 1
        for line in open(f):
            m = re.match(r"\s*([\d.]+)%\s+(\[[.k]\])\s+(.*)", line)
            if m:
                acc[(m.group(2), re.sub(r"go\.shape\.struct \{[^}]*\}", "...", m.group(3).strip()))] += float(m.group(1))
    return {k: v / max(n, 1) for k, v in acc.items()}, n
a, na = load("a")
b, nb = load("b")
if not na or not nb:
    print("perf: no samples (perf record needs perf_event_paranoid <= 1, or root)")
    sys.exit(0)
share = lambda d, k: sum(v for s, v in d.items() if (s[0] == "[k]") == k)
print(f"perf, mean over {na} round(s), % of each proxy's samples: kernel A {share(a, True):.2f} B {share(b, True):.2f}; user space A {share(a, False):.2f} B {share(b, False):.2f}")
rows = sorted(((a.get(k, 0) - b.get(k, 0), k) for k in set(a) | set(b) if k[0] == "[.]"), reverse=True)
print("user-space functions whose share differs most, A - B (A, B):")
for d, k in rows[:20] + [r for r in rows[-5:] if r[0] < 0]:
    print(f"  {d:+6.2f}  ({a.get(k, 0):.2f}, {b.get(k, 0):.2f})  {k[1][:120]}")
PY
fi
