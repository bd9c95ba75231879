#!/usr/bin/env bash
# bench/run.sh — pgbench -S (read-only, primary-key lookups) direct against PostgreSQL,
# through nplus1, and through PgBouncer (session mode) when it is installed.
#
# Everything runs on a throwaway cluster on loopback ports picked at random, and
# everything it starts is stopped and removed on exit, also on failure or Ctrl-C.
#
# Targets alternate within each round (their order rotates from round to round), so
# drift of the machine during the run hits all of them alike. Each cell of the table
# is the median over the rounds.
#
# Usage: bench/run.sh [--duration SECONDS] [--rounds N] [--scale S] [--clients LIST] [--modes LIST]
#                     [--cpus LIST] [--variant NAME=FLAGS]... [--out FILE] [--bin FILE] [--no-pgbouncer]
# Run with --help for details.

set -euo pipefail

DURATION=10
ROUNDS=3
SCALE=10
OUT=""
BIN=""
WARMUP=2
USE_PGBOUNCER=1
CLIENTS_ARG="1 8"
MODES_ARG="simple prepared"
CPUS_ARG=""
VARIANTS=() # NAME=FLAGS: more nplus1 targets, each started with its FLAGS

usage() {
	cat <<'EOF'
Usage: bench/run.sh [options]

Runs pgbench -S -n direct, through nplus1 and through PgBouncer (session mode, when
installed) at -c 1 -j 1 and -c 8 -j 2, with -M simple and -M prepared, and prints a
markdown table of medians over the rounds. pgbench's -j is the lesser of -c and the
machine's CPU count.

Options:
  --duration SECONDS  length of each pgbench run (default 10)
  --rounds N          rounds; each round runs every target at every point (default 3)
  --scale S           pgbench -i scale factor (default 10)
  --clients LIST      pgbench client counts, e.g. "1 16 64 128 256" (default "1 8")
  --modes LIST        pgbench -M modes (default "simple prepared")
  --cpus LIST         a scaling sweep: for each N, the proxies (nplus1 and PgBouncer alike)
                      restart pinned with taskset to the machine's first N CPUs (e.g. "1 2";
                      "all": unpinned); PostgreSQL and pgbench are never pinned, so "direct"
                      is the same reference at every N. Default: unpinned, one set
  --variant NAME=FLAGS
                      one more target: nplus1 started with FLAGS (e.g. "loops16=--relay-loops 16");
                      repeatable. The plain nplus1 target always runs with its defaults
  --out FILE          also write the table (with a short header) to FILE
  --bin FILE          use this nplus1 binary instead of building ./cmd/nplus1
  --no-pgbouncer      leave PgBouncer out even when it is installed
  -h, --help          this text

Needs: go (unless --bin), PostgreSQL server binaries (Debian package postgresql),
pgbench and psql (Debian package postgresql-client), optionally pgbouncer (Debian
package pgbouncer). As root, the server and PgBouncer run as the user postgres (or
nobody when there is no such user).
Total time is about rounds x CPU sets x modes x clients x targets x duration, plus the
build and pgbench -i (the defaults: 3 x 12 x 10 s).
EOF
}

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
say() { printf 'bench: %s\n' "$*" >&2; }
die_log() { local log=$1; shift; show_log "$log"; die "$@"; }
# shellcheck source=bench/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

while (($#)); do
	case $1 in
	--duration) (($# >= 2)) || die "--duration needs a value"; DURATION=$2; shift 2 ;;
	--duration=*) DURATION=${1#*=}; shift ;;
	--rounds) (($# >= 2)) || die "--rounds needs a value"; ROUNDS=$2; shift 2 ;;
	--rounds=*) ROUNDS=${1#*=}; shift ;;
	--scale) (($# >= 2)) || die "--scale needs a value"; SCALE=$2; shift 2 ;;
	--scale=*) SCALE=${1#*=}; shift ;;
	--out) (($# >= 2)) || die "--out needs a value"; OUT=$2; shift 2 ;;
	--out=*) OUT=${1#*=}; shift ;;
	--bin) (($# >= 2)) || die "--bin needs a value"; BIN=$2; shift 2 ;;
	--bin=*) BIN=${1#*=}; shift ;;
	--clients) (($# >= 2)) || die "--clients needs a value"; CLIENTS_ARG=$2; shift 2 ;;
	--clients=*) CLIENTS_ARG=${1#*=}; shift ;;
	--modes) (($# >= 2)) || die "--modes needs a value"; MODES_ARG=$2; shift 2 ;;
	--modes=*) MODES_ARG=${1#*=}; shift ;;
	--cpus) (($# >= 2)) || die "--cpus needs a value"; CPUS_ARG=$2; shift 2 ;;
	--cpus=*) CPUS_ARG=${1#*=}; shift ;;
	--variant) (($# >= 2)) || die "--variant needs a value"; VARIANTS+=("$2"); shift 2 ;;
	--variant=*) VARIANTS+=("${1#*=}"); shift ;;
	--no-pgbouncer) USE_PGBOUNCER=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

is_uint "$DURATION" && ((DURATION >= 1 && DURATION <= 600)) || die "--duration must be 1..600 seconds"
is_uint "$ROUNDS" && ((ROUNDS >= 1 && ROUNDS <= 20)) || die "--rounds must be 1..20"
is_uint "$SCALE" && ((SCALE >= 1 && SCALE <= 1000)) || die "--scale must be 1..1000"
((WARMUP <= DURATION)) || WARMUP=$DURATION
NCPU=$(nproc 2>/dev/null || echo 1)
read -r -a CLIENTS <<<"$CLIENTS_ARG"
((${#CLIENTS[@]})) || die "--clients: give at least one client count"
for c in "${CLIENTS[@]}"; do is_uint "$c" && ((c >= 1 && c <= 1000)) || die "--clients: $c is not a client count (1..1000)"; done
MAXC=$(printf '%s\n' "${CLIENTS[@]}" | sort -n | tail -n1)
read -r -a MODES <<<"$MODES_ARG"
((${#MODES[@]})) || die "--modes: give at least one mode"
for m in "${MODES[@]}"; do [[ $m == simple || $m == extended || $m == prepared ]] || die "--modes: $m is not simple, extended or prepared"; done
CPUSETS=(all)
if [[ -n $CPUS_ARG ]]; then
	read -r -a CPUSETS <<<"$CPUS_ARG"
	for k in "${CPUSETS[@]}"; do
		[[ $k == all ]] || { is_uint "$k" && ((k >= 1 && k <= NCPU)); } || die "--cpus: $k is not all or a CPU count (1..$NCPU on this machine)"
	done
	[[ ${CPUSETS[*]} == all ]] || command -v taskset >/dev/null 2>&1 || die "--cpus needs taskset (Debian package util-linux)"
fi
VARIANT_NAMES=()
declare -A VARIANT_FLAGS=()
for v in "${VARIANTS[@]}"; do
	name=${v%%=*}
	[[ $v == *=* && $name =~ ^[a-z][a-z0-9_-]*$ && $name != nplus1 && $name != direct && $name != pgbouncer ]] ||
		die "--variant $v: want NAME=FLAGS, NAME in lower-case letters, digits, - and _ (not nplus1, direct or pgbouncer)"
	[[ -z ${VARIANT_FLAGS[$name]+x} ]] || die "--variant $name given twice"
	VARIANT_NAMES+=("$name")
	VARIANT_FLAGS[$name]=${v#*=}
done
if [[ -n $OUT ]]; then
	out_dir=$(dirname -- "$OUT")
	[[ -d $out_dir && -w $out_dir ]] || die "--out: directory $out_dir does not exist or is not writable"
	OUT=$(cd -- "$out_dir" && pwd)/$(basename -- "$OUT")
fi
if [[ -n $BIN ]]; then
	[[ -x $BIN ]] || die "--bin: $BIN is not an executable file"
	BIN=$(cd -- "$(dirname -- "$BIN")" && pwd)/$(basename -- "$BIN")
fi

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# Work from /: the server user may not be able to enter the caller's directory.
cd /
CMDLINE="bench/run.sh --duration $DURATION --rounds $ROUNDS --scale $SCALE --clients '${CLIENTS[*]}' --modes '${MODES[*]}'${CPUS_ARG:+ --cpus '$CPUS_ARG'}"
for v in "${VARIANTS[@]}"; do CMDLINE+=" --variant '$v'"; done
CMDLINE+="${OUT:+ --out $OUT}${BIN:+ --bin $BIN}"
((USE_PGBOUNCER)) || CMDLINE+=" --no-pgbouncer"

# ---------------------------------------------------------------- finding tools

# pg_tool (bench/lib.sh) finds each program.
INITDB=$(pg_tool initdb) || die "initdb not found (PATH, pg_config --bindir, /usr/lib/postgresql/*/bin): install the Debian package postgresql"
# Take pg_ctl and postgres from the same directory as initdb, so the versions match.
PGBIN=$(dirname -- "$(readlink -f -- "$INITDB")")
[[ -x $PGBIN/pg_ctl && -x $PGBIN/postgres ]] || die "pg_ctl/postgres not found next to $INITDB: install the Debian package postgresql"
PG_CTL=$PGBIN/pg_ctl
if [[ -x $PGBIN/pgbench ]]; then PGBENCH=$PGBIN/pgbench; else
	PGBENCH=$(pg_tool pgbench) || die "pgbench not found: install the Debian package postgresql-client (or postgresql-contrib on older releases)"
fi
if [[ -x $PGBIN/psql ]]; then PSQL=$PGBIN/psql; else
	PSQL=$(pg_tool psql) || die "psql not found: install the Debian package postgresql-client"
fi
PGBOUNCER=""
PGBOUNCER_NOTE=""
if ((!USE_PGBOUNCER)); then PGBOUNCER_NOTE="PgBouncer left out (--no-pgbouncer)"
elif p=$(find_pgbouncer); then PGBOUNCER=$p
else PGBOUNCER_NOTE="PgBouncer is NOT installed (Debian package pgbouncer)"
fi
if [[ -z $BIN ]]; then
	command -v go >/dev/null 2>&1 || die "go not found on PATH (needed to build nplus1; or pass --bin FILE)"
fi
command -v timeout >/dev/null 2>&1 || die "timeout not found (Debian package coreutils)"

# ---------------------------------------------------------------- run-as user




# ---------------------------------------------------------------- cleanup

TMP=""
PG_STARTED=0
NPLUS1_PIDS=()
BOUNCER_PID=""
BENCH_PID=""


cleanup() {
	local rc=$?
	trap '' INT TERM
	stop_pid "$BENCH_PID" pgbench
	for pid in "${NPLUS1_PIDS[@]}"; do stop_pid "$pid" nplus1; done
	stop_pid "$BOUNCER_PID" pgbouncer
	if [[ -n $TMP && -s $TMP/run/pgbouncer.pid ]]; then
		stop_pid "$(head -n1 "$TMP/run/pgbouncer.pid" 2>/dev/null || true)" pgbouncer
	fi
	if ((PG_STARTED)); then
		as_db_user "$PG_CTL" -D "$TMP/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
			as_db_user "$PG_CTL" -D "$TMP/data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
		if [[ -f $TMP/data/postmaster.pid ]]; then
			stop_pid "$(head -n1 "$TMP/data/postmaster.pid" 2>/dev/null || true)" postgres
		fi
	fi
	if [[ -n $TMP && -d $TMP ]]; then rm -rf -- "$TMP"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

# Start from a clean libpq environment: no inherited host, service, options or TLS mode.
for v in $(compgen -e); do
	case $v in PG*) unset "$v" ;; esac
done
export PGSSLMODE=disable PGCONNECT_TIMEOUT=10 PGAPPNAME=nplus1-bench

TMP=$(mktemp -d "${TMPDIR:-/tmp}/nplus1-bench.XXXXXX")
chmod 755 "$TMP"
mkdir -p "$TMP/run"
if [[ -n $RUN_AS ]]; then chown "$RUN_AS" "$TMP/run"; fi

# ---------------------------------------------------------------- ports


USED_PORTS=" "

PG_PORT=$(free_port)
NPLUS1_PORT=$(free_port)
BOUNCER_PORT=$(free_port)
DB_USER=bench
DB_NAME=postgres

# ---------------------------------------------------------------- build nplus1

if [[ -z $BIN ]]; then
	say "building nplus1 (go build ./cmd/nplus1)"
	(cd -- "$REPO" && go build -o "$TMP/nplus1" ./cmd/nplus1) || die "go build ./cmd/nplus1 failed"
	BIN=$TMP/nplus1
fi
NPLUS1_REV=$(cd -- "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd -- "$REPO" && git status --porcelain --untracked-files=no 2>/dev/null) ]]; then NPLUS1_REV+=" (with local changes)"; fi

# ---------------------------------------------------------------- PostgreSQL

say "creating a throwaway cluster with $INITDB (port $PG_PORT)"
start_cluster "$TMP" "$PG_PORT" "$((MAXC * 3 + 30 > 100 ? MAXC * 3 + 30 : 100))" "$DB_USER"


PG_VERSION=$(psql_at "$PG_PORT" "show server_version") || die "cannot connect to PostgreSQL on 127.0.0.1:$PG_PORT"
say "pgbench -i -s $SCALE"
"$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" "$DB_NAME" >"$TMP/pgbench-init.log" 2>&1 ||
	die_log "$TMP/pgbench-init.log" "pgbench -i failed"
# Load the tables into shared_buffers so the first target measured is not the one that pays for it.
if psql_at "$PG_PORT" "create extension if not exists pg_prewarm" >/dev/null 2>&1; then
	psql_at "$PG_PORT" "select pg_prewarm('pgbench_accounts'), pg_prewarm('pgbench_accounts_pkey')" >/dev/null 2>&1 || true
fi

# ---------------------------------------------------------------- proxies

wait_ready() { # wait_ready PORT PID NAME LOG...
	local port=$1 pid=$2 name=$3 i
	shift 3
	for ((i = 0; i < 150; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then show_log "$@"; die "$name exited during startup"; fi
		if [[ $(psql_at "$port" "select 1" 2>/dev/null) == 1 ]]; then return 0; fi
		sleep 0.1
	done
	psql_at "$port" "select 1" >&2 || true
	show_log "$@"
	die "$name did not answer a query on 127.0.0.1:$port within 15 s"
}

# Proxies run in their own session, so a Ctrl-C on the terminal reaches only this script,
# which then stops them in order.
SETSID=()
if command -v setsid >/dev/null 2>&1; then SETSID=(setsid); fi

BOUNCER_VERSION=""
if [[ -n $PGBOUNCER ]]; then
	BOUNCER_VERSION=$("$PGBOUNCER" --version 2>/dev/null | head -n1 || true)
	write_pgbouncer_ini "$TMP/run" "$BOUNCER_PORT" "$PG_PORT" "$DB_USER" "$MAXC"
else
	say "$PGBOUNCER_NOTE: comparing direct and nplus1 only"
fi

TARGETS=(direct)
[[ -z $PGBOUNCER ]] || TARGETS+=(pgbouncer)
TARGETS+=(nplus1 "${VARIANT_NAMES[@]}")
declare -A PORT_OF=([direct]=$PG_PORT [pgbouncer]=$BOUNCER_PORT [nplus1]=$NPLUS1_PORT)
declare -A PID_OF=()
for v in "${VARIANT_NAMES[@]}"; do PORT_OF[$v]=$(free_port); done
target_port() { echo "${PORT_OF[$1]}"; }
target_pid() { echo "${PID_OF[$1]:-}"; }

# PINNED: the taskset prefix of the CPU set being measured (empty: unpinned).
PINNED=()
pin_for() { # pin_for CPUSET: set PINNED
	PINNED=()
	if [[ $1 != all ]]; then PINNED=(taskset -c "0-$(($1 - 1))"); fi
}

# start_proxies: nplus1 (and its variants) and PgBouncer, pinned as PINNED says. Each
# CPU set starts them afresh: nplus1 sizes itself to the CPUs it may use at startup,
# and PgBouncer gives back the server connections it keeps in session mode.
start_proxies() {
	local t flags
	for t in nplus1 "${VARIANT_NAMES[@]}"; do
		flags=()
		if [[ $t != nplus1 ]]; then read -r -a flags <<<"${VARIANT_FLAGS[$t]}"; fi
		say "starting nplus1 proxy ($t${flags[*]:+: ${flags[*]}}) on 127.0.0.1:${PORT_OF[$t]}${PINNED[*]:+, ${PINNED[*]}}"
		"${SETSID[@]}" "${PINNED[@]}" "$BIN" proxy --listen "127.0.0.1:${PORT_OF[$t]}" --upstream "127.0.0.1:$PG_PORT" --log-level warn \
			"${flags[@]}" >"$TMP/$t.log" 2>&1 </dev/null &
		PID_OF[$t]=$!
		NPLUS1_PIDS+=("$!")
		wait_ready "${PORT_OF[$t]}" "${PID_OF[$t]}" "nplus1 proxy ($t)" "$TMP/$t.log"
	done
	if [[ -n $PGBOUNCER ]]; then
		say "starting $BOUNCER_VERSION (session mode) on 127.0.0.1:$BOUNCER_PORT${PINNED[*]:+, ${PINNED[*]}}"
		exec_as_db_user "${SETSID[@]}" "${PINNED[@]}" "$PGBOUNCER" -q "$TMP/run/pgbouncer.ini" >"$TMP/run/pgbouncer.out" 2>&1 </dev/null &
		BOUNCER_PID=$!
		PID_OF[pgbouncer]=$BOUNCER_PID
		wait_ready "$BOUNCER_PORT" "$BOUNCER_PID" "pgbouncer" "$TMP/run/pgbouncer.out" "$TMP/run/pgbouncer.log"
	fi
}

stop_proxies() {
	local pid
	for pid in "${NPLUS1_PIDS[@]}"; do stop_pid "$pid" nplus1; done
	NPLUS1_PIDS=()
	stop_pid "$BOUNCER_PID" pgbouncer
	BOUNCER_PID=""
}

# ---------------------------------------------------------------- runs

jobs_for() { if (($1 < NCPU)); then echo "$1"; else echo "$NCPU"; fi; }

# run_pgbench TARGET MODE CLIENTS SECONDS LOGFILE: pgbench -S in the background, so Ctrl-C
# is handled at once (bash runs traps only between commands, `wait` is interruptible).
run_pgbench() {
	local port rc=0
	port=$(target_port "$1")
	timeout -k 5 $(($4 + 60)) "$PGBENCH" -S -n -M "$2" -c "$3" -j "$(jobs_for "$3")" -T "$4" \
		-h 127.0.0.1 -p "$port" -U "$DB_USER" "$DB_NAME" >"$5" 2>&1 </dev/null &
	BENCH_PID=$!
	wait "$BENCH_PID" || rc=$?
	BENCH_PID=""
	return "$rc"
}

# parse LOGFILE: prints "TPS LATENCY_MS" (TPS without connection time), or fails.
parse() {
	awk '
		/^tps = .*\((without initial connection time|excluding connections establishing)\)/ { tps = $3 }
		/^latency average = / { lat = $4 }
		/^number of failed transactions: / { failed = $5 }
		/^number of transactions actually processed: / { split($6, n, "/"); txns = n[1] + 0 }
		END {
			if (tps == "" || lat == "" || txns == "" || (failed != "" && failed + 0 > 0)) exit 1
			print tps, lat, txns
		}' "$1"
}

# CPU time (user + system, all threads) a process has used, in clock ticks; empty if unknown.
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_ticks() {
	local pid=$1
	[[ -n $pid && -r /proc/$pid/stat ]] || return 0
	# fields after the ")" that closes the command name: utime and stime are the 12th and 13th
	sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }' || true
}
# thread_ticks PID: "TID TICKS" per thread of PID.
thread_ticks() {
	local f
	for f in /proc/"$1"/task/*/stat; do
		[[ -r $f ]] && sed 's/.*) //' "$f" 2>/dev/null | awk -v f="$f" '{ split(f, p, "/"); print p[5], $12 + $13 }'
	done
}
# busiest BEFORE AFTER SECONDS: the CPU share (%) of the thread that used the most between
# two thread_ticks listings: near 100, one thread (an event loop, PgBouncer's only one) is
# the bottleneck.
busiest() {
	awk -v hz="$CLK_TCK" -v d="$3" 'NR == FNR { a[$1] = $2; next } { u = $2 - a[$1]; if (u > m) m = u } END { printf "%.0f", m / hz / d * 100 }' "$1" "$2"
}

RESULTS=$TMP/results.txt # lines: cpus mode clients target round tps latency proxy-cpu-us-per-txn busiest-thread-% (- for direct)
: >"$RESULTS"
FAILED_RUNS=0
npoints=$((${#CPUSETS[@]} * ${#MODES[@]} * ${#CLIENTS[@]}))
ntargets=${#TARGETS[@]}
total=$((ROUNDS * npoints * ntargets * DURATION + ${#CPUSETS[@]} * ${#MODES[@]} * ntargets * WARMUP))
say "targets: ${TARGETS[*]}; $ROUNDS round(s) x $npoints points x $ntargets targets x ${DURATION}s (+ warm-up): about $((total / 60)) min $((total % 60)) s"

loadavg() { awk '{ print $1 }' /proc/loadavg 2>/dev/null || echo '?'; }
LOAD_START=$(loadavg)
if awk -v l="$LOAD_START" -v n="$NCPU" 'BEGIN { exit !(l + 0 > n * 0.5) }'; then
	say "warning: load average $LOAD_START on $NCPU CPU(s) before the runs: other work on this machine will skew the numbers"
fi

for cpus in "${CPUSETS[@]}"; do
	pin_for "$cpus"
	start_proxies
	say "warm-up (${WARMUP}s per target and mode at -c ${CLIENTS[-1]}, not recorded)"
	for mode in "${MODES[@]}"; do
		for t in "${TARGETS[@]}"; do
			run_pgbench "$t" "$mode" "${CLIENTS[-1]}" "$WARMUP" "$TMP/warmup.out" ||
				{ sed 's/^/    /' "$TMP/warmup.out" >&2; die "warm-up run failed: $t -M $mode -c ${CLIENTS[-1]}"; }
		done
	done
	for ((r = 1; r <= ROUNDS; r++)); do
		for mode in "${MODES[@]}"; do
			for c in "${CLIENTS[@]}"; do
				# rotate the target order each round, so no target is always first after a switch
				for ((k = 0; k < ntargets; k++)); do
					t=${TARGETS[$(((k + r - 1) % ntargets))]}
					log=$TMP/run-$cpus-$r-$mode-$c-$t.out
					pid=$(target_pid "$t")
					cpu0=$(cpu_ticks "$pid")
					[[ -z $pid ]] || thread_ticks "$pid" >"$TMP/threads0"
					if run_pgbench "$t" "$mode" "$c" "$DURATION" "$log" && res=$(parse "$log"); then
						cpu1=$(cpu_ticks "$pid")
						read -r tps lat txns <<<"$res"
						cpu=- top=-
						if [[ -n $cpu0 && -n $cpu1 ]] && ((txns > 0)); then
							cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$CLK_TCK" -v n="$txns" 'BEGIN { printf "%.2f", (b - a) / hz * 1e6 / n }')
							thread_ticks "$pid" >"$TMP/threads1"
							top=$(busiest "$TMP/threads0" "$TMP/threads1" "$DURATION")
						fi
						printf '%s %s %s %s %s %s %s %s %s\n' "$cpus" "$mode" "$c" "$t" "$r" "$tps" "$lat" "$cpu" "$top" >>"$RESULTS"
						say "$(printf 'cpus %-3s round %d/%d  -M %-8s -c %-3d  %-9s %10.0f tps  %7.3f ms' "$cpus" "$r" "$ROUNDS" "$mode" "$c" "$t" "$tps" "$lat")${pid:+ $(printf '%6s' "$cpu") us CPU/txn, busiest thread $top%}"
					else
						FAILED_RUNS=$((FAILED_RUNS + 1))
						say "cpus $cpus round $r/$ROUNDS -M $mode -c $c $t: pgbench FAILED; its output:"
						sed 's/^/    /' "$log" >&2
					fi
				done
			done
		done
	done
	stop_proxies
done

# ---------------------------------------------------------------- table

# median CPUS MODE CLIENTS TARGET FIELD (6 = tps, 7 = latency, 8 = proxy CPU, 9 = busiest
# thread); empty when there are no values
median() {
	awk -v k="$1" -v m="$2" -v c="$3" -v t="$4" -v f="$5" '$1 == k && $2 == m && $3 == c && $4 == t { print $f }' "$RESULTS" |
		grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END {
			if (NR == 0) exit
			if (NR % 2) printf "%.6f\n", v[(NR + 1) / 2]
			else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
		}'
}
# spread CPUS MODE CLIENTS A B: "min–max" of the per-round TPS ratios A/B; empty without rounds
spread() {
	awk -v k="$1" -v m="$2" -v c="$3" -v a="$4" -v b="$5" '
		$1 == k && $2 == m && $3 == c && $4 == a { x[$5] = $6 }
		$1 == k && $2 == m && $3 == c && $4 == b { y[$5] = $6 }
		END {
			for (r in x) if ((r in y) && y[r] > 0) { q = x[r] / y[r]; if (n++ == 0 || q < lo) lo = q; if (n == 1 || q > hi) hi = q }
			if (n > 1) printf "%.2f–%.2f", lo, hi
		}' "$RESULTS"
}
fmt_tps() { if [[ -n $1 ]]; then printf '%.0f' "$1"; else printf 'fail'; fi; }
fmt_cpu() { if [[ -n $1 ]]; then printf '%.1f' "$1"; else printf 'n/a'; fi; }
fmt_lat() { if [[ -n $1 ]]; then printf '%.3f' "$1"; else printf 'fail'; fi; }
fmt_pct() { if [[ -n $1 ]]; then printf '%.0f' "$1"; else printf 'n/a'; fi; }
ratio() { if [[ -n $1 && -n $2 ]]; then awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; else printf 'n/a'; fi; }

# The nplus1 targets are compared with PgBouncer when it ran, else with the direct connection.
BASE=direct
[[ -z $PGBOUNCER ]] || BASE=pgbouncer
NTARGETS=(nplus1 "${VARIANT_NAMES[@]}")
PROXIES=("${TARGETS[@]:1}") # all but direct
row_start() { if [[ -n $CPUS_ARG ]]; then printf '| %s | %s | %s |' "$1" "$2" "$3"; else printf '| %s | %s |' "$2" "$3"; fi; }
head_start() { if [[ -n $CPUS_ARG ]]; then printf '| proxy CPUs | mode | clients |'; else printf '| mode | clients |'; fi; }
rule_start() { if [[ -n $CPUS_ARG ]]; then printf '|---:|---|---:|'; else printf '|---|---:|'; fi; }

TABLE=$TMP/table.md
{
	head_start
	for t in "${TARGETS[@]}"; do printf ' %s TPS |' "$t"; done
	for t in "${NTARGETS[@]}"; do printf ' %s/%s |' "$t" "$BASE"; done
	((ROUNDS < 2)) || for t in "${NTARGETS[@]}"; do printf ' %s/%s per round |' "$t" "$BASE"; done
	for t in "${TARGETS[@]}"; do printf ' %s lat (ms) |' "$t"; done
	echo
	rule_start
	for t in "${TARGETS[@]}" "${NTARGETS[@]}" "${TARGETS[@]}"; do printf -- '---:|'; done
	((ROUNDS < 2)) || for t in "${NTARGETS[@]}"; do printf -- '---:|'; done
	echo
	for cpus in "${CPUSETS[@]}"; do
		for mode in "${MODES[@]}"; do
			for c in "${CLIENTS[@]}"; do
				row_start "$cpus" "$mode" "$c"
				for t in "${TARGETS[@]}"; do printf ' %s |' "$(fmt_tps "$(median "$cpus" "$mode" "$c" "$t" 6)")"; done
				for t in "${NTARGETS[@]}"; do printf ' %s |' "$(ratio "$(median "$cpus" "$mode" "$c" "$t" 6)" "$(median "$cpus" "$mode" "$c" "$BASE" 6)")"; done
				((ROUNDS < 2)) || for t in "${NTARGETS[@]}"; do printf ' %s |' "$(spread "$cpus" "$mode" "$c" "$t" "$BASE")"; done
				for t in "${TARGETS[@]}"; do printf ' %s |' "$(fmt_lat "$(median "$cpus" "$mode" "$c" "$t" 7)")"; done
				echo
			done
		done
	done
} >"$TABLE"

# The proxies' own CPU time per transaction: on a machine with few CPUs, what the proxy burns
# is taken from PostgreSQL and pgbench, so this explains much of the TPS gap. The busiest
# thread's share says whether one thread (a relay loop; PgBouncer's only one) is the limit.
CPU_TABLE=$TMP/cpu.md
{
	head_start
	for t in "${PROXIES[@]}"; do printf ' %s CPU (µs/txn) |' "$t"; done
	for t in "${PROXIES[@]}"; do printf ' %s busiest thread (%%) |' "$t"; done
	echo
	rule_start
	for t in "${PROXIES[@]}" "${PROXIES[@]}"; do printf -- '---:|'; done
	echo
	for cpus in "${CPUSETS[@]}"; do
		for mode in "${MODES[@]}"; do
			for c in "${CLIENTS[@]}"; do
				row_start "$cpus" "$mode" "$c"
				for t in "${PROXIES[@]}"; do printf ' %s |' "$(fmt_cpu "$(median "$cpus" "$mode" "$c" "$t" 8)")"; done
				for t in "${PROXIES[@]}"; do printf ' %s |' "$(fmt_pct "$(median "$cpus" "$mode" "$c" "$t" 9)")"; done
				echo
			done
		done
	done
} >"$CPU_TABLE"

LOAD_END=$(loadavg)
HEADER=$TMP/header.md
{
	echo "pgbench -S -n, scale $SCALE, ${DURATION}s per run, median of $ROUNDS round(s); TPS without connection time; -j the lesser of -c and $NCPU."
	echo "PostgreSQL $PG_VERSION; ${BOUNCER_VERSION:-$PGBOUNCER_NOTE: direct vs nplus1 only}${BOUNCER_VERSION:+ (pool_mode=session)}; nplus1 $NPLUS1_REV (event tracking on)."
	for v in "${VARIANT_NAMES[@]}"; do echo "Variant $v: nplus1 proxy ${VARIANT_FLAGS[$v]}."; done
	[[ -z $CPUS_ARG ]] || echo "Proxy CPUs: the proxies pinned (taskset) to the machine's first N CPUs; PostgreSQL and pgbench unpinned."
	echo "Machine: $NCPU CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)), $(uname -sr); all on loopback; load average $LOAD_START before, $LOAD_END after."
	echo "Command: $CMDLINE"
} >"$HEADER"

REPORT=$TMP/report.md
{
	cat "$HEADER"
	echo
	cat "$TABLE"
	if [[ -n $PGBOUNCER ]]; then
		worst=""
		for cpus in "${CPUSETS[@]}"; do for mode in "${MODES[@]}"; do for c in "${CLIENTS[@]}"; do
			q=$(ratio "$(median "$cpus" "$mode" "$c" nplus1 6)" "$(median "$cpus" "$mode" "$c" pgbouncer 6)")
			[[ $q == n/a ]] || worst=$(awk -v a="$q" -v b="$worst" 'BEGIN { print (b == "" || a + 0 < b + 0) ? a : b }')
		done; done; done
		echo
		echo "Lowest nplus1/pgbouncer: ${worst:-n/a} (target: >= 1.00 at every point)."
	fi
	echo
	echo "CPU time of the proxy process per transaction (user + system, median over rounds), and the CPU share of its busiest thread:"
	echo
	cat "$CPU_TABLE"
} >"$REPORT"
echo
cat "$REPORT"
if [[ -n $OUT ]]; then
	cp -- "$REPORT" "$OUT"
	say "table written to $OUT"
fi
if ((FAILED_RUNS > 0)); then
	show_log "$TMP"/nplus1*.log "$TMP/run/pgbouncer.log"
	die "$FAILED_RUNS pgbench run(s) failed; their medians leave them out (or say fail)"
fi
