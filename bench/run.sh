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
# Usage: bench/run.sh [--duration SECONDS] [--rounds N] [--scale S] [--out FILE] [--bin FILE] [--no-pgbouncer]
# Run with --help for details.

set -euo pipefail

DURATION=10
ROUNDS=3
SCALE=10
OUT=""
BIN=""
WARMUP=2
USE_PGBOUNCER=1

usage() {
	cat <<'EOF'
Usage: bench/run.sh [options]

Runs pgbench -S -n direct, through nplus1 and through PgBouncer (session mode, when
installed) at -c 1 -j 1 and -c 8 -j 2, with -M simple and -M prepared, and prints a
markdown table of medians over the rounds.

Options:
  --duration SECONDS  length of each pgbench run (default 10)
  --rounds N          rounds; each round runs every target at every point (default 3)
  --scale S           pgbench -i scale factor (default 10)
  --out FILE          also write the table (with a short header) to FILE
  --bin FILE          use this nplus1 binary instead of building ./cmd/nplus1
  --no-pgbouncer      leave PgBouncer out even when it is installed
  -h, --help          this text

Needs: go (unless --bin), PostgreSQL server binaries (Debian package postgresql),
pgbench and psql (Debian package postgresql-client), optionally pgbouncer (Debian
package pgbouncer). As root, the server and PgBouncer run as the user postgres (or
nobody when there is no such user).
Total time is about rounds x 12 x duration, plus the build and pgbench -i.
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
	--no-pgbouncer) USE_PGBOUNCER=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

is_uint "$DURATION" && ((DURATION >= 1 && DURATION <= 600)) || die "--duration must be 1..600 seconds"
is_uint "$ROUNDS" && ((ROUNDS >= 1 && ROUNDS <= 20)) || die "--rounds must be 1..20"
is_uint "$SCALE" && ((SCALE >= 1 && SCALE <= 1000)) || die "--scale must be 1..1000"
((WARMUP <= DURATION)) || WARMUP=$DURATION
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
CMDLINE="bench/run.sh --duration $DURATION --rounds $ROUNDS --scale $SCALE${OUT:+ --out $OUT}${BIN:+ --bin $BIN}"
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
elif p=$(command -v pgbouncer 2>/dev/null); then PGBOUNCER=$p
elif [[ -x /usr/sbin/pgbouncer ]]; then PGBOUNCER=/usr/sbin/pgbouncer
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
NPLUS1_PID=""
BOUNCER_PID=""
BENCH_PID=""


cleanup() {
	local rc=$?
	trap '' INT TERM
	stop_pid "$BENCH_PID" pgbench
	stop_pid "$NPLUS1_PID" nplus1
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
mkdir -m 700 "$TMP/data"
if [[ -n $RUN_AS ]]; then chown "$RUN_AS" "$TMP/data"; fi
as_db_user "$INITDB" -D "$TMP/data" -U "$DB_USER" -A trust -E UTF8 --no-locale -N \
	>"$TMP/initdb.log" 2>&1 || die_log "$TMP/initdb.log" "initdb failed"
cat >>"$TMP/data/postgresql.conf" <<EOF

# nplus1 bench: throwaway cluster, loopback only, durability off (the data is regenerated every run)
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
max_connections = 100
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
jit = off
EOF
PG_STARTED=1
as_db_user "$PG_CTL" -D "$TMP/data" -l "$TMP/run/postgres.log" -w -t 60 start >/dev/null 2>&1 ||
	die_log "$TMP/run/postgres.log" "PostgreSQL did not start"


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

say "starting nplus1 proxy on 127.0.0.1:$NPLUS1_PORT"
"${SETSID[@]}" "$BIN" proxy --listen "127.0.0.1:$NPLUS1_PORT" --upstream "127.0.0.1:$PG_PORT" --log-level warn \
	>"$TMP/nplus1.log" 2>&1 </dev/null &
NPLUS1_PID=$!
wait_ready "$NPLUS1_PORT" "$NPLUS1_PID" "nplus1 proxy" "$TMP/nplus1.log"

TARGETS=(direct nplus1)
BOUNCER_VERSION=""
if [[ -n $PGBOUNCER ]]; then
	BOUNCER_VERSION=$("$PGBOUNCER" --version 2>/dev/null | head -n1 || true)
	say "starting $BOUNCER_VERSION (session mode) on 127.0.0.1:$BOUNCER_PORT"
	printf '"%s" ""\n' "$DB_USER" >"$TMP/run/userlist.txt"
	cat >"$TMP/run/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $TMP/run/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
max_db_connections = 0
ignore_startup_parameters = extra_float_digits
logfile = $TMP/run/pgbouncer.log
pidfile = $TMP/run/pgbouncer.pid
log_connections = 0
log_disconnections = 0
admin_users = $DB_USER
EOF
	exec_as_db_user "${SETSID[@]}" "$PGBOUNCER" -q "$TMP/run/pgbouncer.ini" >"$TMP/run/pgbouncer.out" 2>&1 </dev/null &
	BOUNCER_PID=$!
	wait_ready "$BOUNCER_PORT" "$BOUNCER_PID" "pgbouncer" "$TMP/run/pgbouncer.out" "$TMP/run/pgbouncer.log"
	TARGETS=(direct pgbouncer nplus1)
else
	say "$PGBOUNCER_NOTE: comparing direct and nplus1 only"
fi

target_port() {
	case $1 in
	direct) echo "$PG_PORT" ;;
	nplus1) echo "$NPLUS1_PORT" ;;
	pgbouncer) echo "$BOUNCER_PORT" ;;
	esac
}

# ---------------------------------------------------------------- runs

MODES=(simple prepared)
CLIENTS=(1 8)
jobs_for() { if (($1 >= 2)); then echo 2; else echo 1; fi; }

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
target_pid() {
	case $1 in
	nplus1) echo "$NPLUS1_PID" ;;
	pgbouncer) echo "$BOUNCER_PID" ;;
	*) echo "" ;;
	esac
}

RESULTS=$TMP/results.txt # lines: mode clients target round tps latency proxy-cpu-us-per-txn (- for direct)
: >"$RESULTS"
FAILED_RUNS=0
npoints=$((${#MODES[@]} * ${#CLIENTS[@]}))
ntargets=${#TARGETS[@]}
total=$((ROUNDS * npoints * ntargets * DURATION + ${#MODES[@]} * ntargets * WARMUP))
say "targets: ${TARGETS[*]}; $ROUNDS round(s) x $npoints points x $ntargets targets x ${DURATION}s (+ warm-up): about $((total / 60)) min $((total % 60)) s"

loadavg() { awk '{ print $1 }' /proc/loadavg 2>/dev/null || echo '?'; }
NCPU=$(nproc 2>/dev/null || echo 1)
LOAD_START=$(loadavg)
if awk -v l="$LOAD_START" -v n="$NCPU" 'BEGIN { exit !(l + 0 > n * 0.5) }'; then
	say "warning: load average $LOAD_START on $NCPU CPU(s) before the runs: other work on this machine will skew the numbers"
fi

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
				log=$TMP/run-$r-$mode-$c-$t.out
				pid=$(target_pid "$t")
				cpu0=$(cpu_ticks "$pid")
				if run_pgbench "$t" "$mode" "$c" "$DURATION" "$log" && res=$(parse "$log"); then
					cpu1=$(cpu_ticks "$pid")
					read -r tps lat txns <<<"$res"
					cpu=-
					if [[ -n $cpu0 && -n $cpu1 ]] && ((txns > 0)); then
						cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$CLK_TCK" -v n="$txns" 'BEGIN { printf "%.2f", (b - a) / hz * 1e6 / n }')
					fi
					printf '%s %s %s %s %s %s %s\n' "$mode" "$c" "$t" "$r" "$tps" "$lat" "$cpu" >>"$RESULTS"
					say "$(printf 'round %d/%d  -M %-8s -c %d  %-9s %10.0f tps  %7.3f ms' "$r" "$ROUNDS" "$mode" "$c" "$t" "$tps" "$lat")${pid:+ $(printf '%6s' "$cpu") us CPU/txn}"
				else
					FAILED_RUNS=$((FAILED_RUNS + 1))
					say "round $r/$ROUNDS -M $mode -c $c $t: pgbench FAILED; its output:"
					sed 's/^/    /' "$log" >&2
				fi
			done
		done
	done
done

# ---------------------------------------------------------------- table

# median MODE CLIENTS TARGET FIELD (5 = tps, 6 = latency, 7 = proxy CPU); empty when there are no values
median() {
	awk -v m="$1" -v c="$2" -v t="$3" -v f="$4" '$1 == m && $2 == c && $3 == t { print $f }' "$RESULTS" |
		grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END {
			if (NR == 0) exit
			if (NR % 2) printf "%.6f\n", v[(NR + 1) / 2]
			else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
		}'
}
fmt_tps() { if [[ -n $1 ]]; then printf '%.0f' "$1"; else printf 'fail'; fi; }
fmt_cpu() { if [[ -n $1 ]]; then printf '%.1f' "$1"; else printf 'n/a'; fi; }
fmt_lat() { if [[ -n $1 ]]; then printf '%.3f' "$1"; else printf 'fail'; fi; }
ratio() { if [[ -n $1 && -n $2 ]]; then awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; else printf 'n/a'; fi; }

TABLE=$TMP/table.md
{
	if [[ -n $PGBOUNCER ]]; then
		echo "| mode | clients | direct TPS | pgbouncer TPS | nplus1 TPS | nplus1/direct | nplus1/pgbouncer | direct lat (ms) | pgbouncer lat (ms) | nplus1 lat (ms) |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	else
		echo "| mode | clients | direct TPS | nplus1 TPS | nplus1/direct | direct lat (ms) | nplus1 lat (ms) |"
		echo "|---|---:|---:|---:|---:|---:|---:|"
	fi
	for mode in "${MODES[@]}"; do
		for c in "${CLIENTS[@]}"; do
			dt=$(median "$mode" "$c" direct 5) dl=$(median "$mode" "$c" direct 6)
			nt=$(median "$mode" "$c" nplus1 5) nl=$(median "$mode" "$c" nplus1 6)
			if [[ -n $PGBOUNCER ]]; then
				bt=$(median "$mode" "$c" pgbouncer 5) bl=$(median "$mode" "$c" pgbouncer 6)
				echo "| $mode | $c | $(fmt_tps "$dt") | $(fmt_tps "$bt") | $(fmt_tps "$nt") | $(ratio "$nt" "$dt") | $(ratio "$nt" "$bt") | $(fmt_lat "$dl") | $(fmt_lat "$bl") | $(fmt_lat "$nl") |"
			else
				echo "| $mode | $c | $(fmt_tps "$dt") | $(fmt_tps "$nt") | $(ratio "$nt" "$dt") | $(fmt_lat "$dl") | $(fmt_lat "$nl") |"
			fi
		done
	done
} >"$TABLE"

# The proxies' own CPU time per transaction: on a machine with few CPUs, what the proxy burns
# is taken from PostgreSQL and pgbench, so this explains much of the TPS gap.
CPU_TABLE=$TMP/cpu.md
{
	if [[ -n $PGBOUNCER ]]; then
		echo "| mode | clients | pgbouncer CPU (us/txn) | nplus1 CPU (us/txn) |"
		echo "|---|---:|---:|---:|"
	else
		echo "| mode | clients | nplus1 CPU (us/txn) |"
		echo "|---|---:|---:|"
	fi
	for mode in "${MODES[@]}"; do
		for c in "${CLIENTS[@]}"; do
			nc=$(median "$mode" "$c" nplus1 7)
			if [[ -n $PGBOUNCER ]]; then
				bc=$(median "$mode" "$c" pgbouncer 7)
				echo "| $mode | $c | $(fmt_cpu "$bc") | $(fmt_cpu "$nc") |"
			else
				echo "| $mode | $c | $(fmt_cpu "$nc") |"
			fi
		done
	done
} >"$CPU_TABLE"

LOAD_END=$(loadavg)
HEADER=$TMP/header.md
{
	echo "pgbench -S -n, scale $SCALE, ${DURATION}s per run, median of $ROUNDS round(s); TPS without connection time; -c 1 -j 1 and -c 8 -j 2."
	echo "PostgreSQL $PG_VERSION; ${BOUNCER_VERSION:-$PGBOUNCER_NOTE: direct vs nplus1 only}${BOUNCER_VERSION:+ (pool_mode=session)}; nplus1 $NPLUS1_REV (event tracking on)."
	echo "Machine: $NCPU CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)), $(uname -sr); all on loopback; load average $LOAD_START before, $LOAD_END after."
	echo "Command: $CMDLINE"
} >"$HEADER"

REPORT=$TMP/report.md
{
	cat "$HEADER"
	echo
	cat "$TABLE"
	if [[ -n $PGBOUNCER ]]; then
		worst=$(awk -F'|' 'NR > 2 { gsub(/ /, "", $8); if ($8 != "n/a" && (min == "" || $8 + 0 < min)) min = $8 + 0 } END { if (min != "") printf "%.2f", min }' "$TABLE")
		echo
		echo "Lowest nplus1/pgbouncer: ${worst:-n/a} (target: >= 0.90 at every point)."
	fi
	echo
	echo "CPU time of the proxy process per transaction (user + system, median over rounds):"
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
	show_log "$TMP/nplus1.log" "$TMP/run/pgbouncer.log"
	die "$FAILED_RUNS pgbench run(s) failed; their medians leave them out (or say fail)"
fi
