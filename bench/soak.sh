#!/usr/bin/env bash
# bench/soak.sh — does the nplus1 proxy stay flat (memory, goroutines, file descriptors) for an
# hour of load, connection churn, injected network faults and floods of silent clients?
#
# Design. One nplus1 proxy; its --upstream is bench/faultproxy (relay), a TCP forwarder in front
# of a throwaway PostgreSQL. Everything goes through both:
#
#   pgbench / psql / flood --> nplus1 (--login-timeout 5s, --http for /metrics) --> faultproxy --> PostgreSQL
#
# faultproxy reads the startup packet of each session (nplus1 forwards it unchanged) and injects
# faults only into sessions whose application_name starts with soak-fault. So the other streams
# share the proxy, its event loop and its analyzer with the broken sessions but are never hit
# themselves, and must come through without a single error: that is the isolation check.
#
#   steady   pgbench -S -M prepared, 6 clients, --rate TPS in all (soak-steady), for the whole run
#   nplus1   pgbench with a script of one list query and 10 lookups by id, -M extended, 2 clients,
#            20 requests/s (soak-nplus1): the tracker, the analyzer and the findings path
#   churn    pgbench -S -C (a new connection per transaction), 3 clients, --churn-rate in all (soak-churn)
#   fault    4 loops of pgbench -S -M extended -c 1 at 100 TPS each (soak-fault): faultproxy cuts one
#            of their sessions mid-message (FIN; either direction) every 5 s on average, resets one
#            (RST) every 10 s, stalls one direction of one for 1-3 s every 10 s, and resets 5% of
#            their new connections before PostgreSQL is dialed. pgbench (15) has no option to survive a lost
#            connection, so each loop restarts pgbench when it exits and counts how its runs ended.
#   flood    every --flood-every seconds, faultproxy flood opens --flood connections to the proxy at
#            once and stays silent, alternately sending nothing and sending a startup packet for a
#            user that must give a SCRAM password (the server's challenge is never answered); the
#            proxy must drop every one of them at --login-timeout.
#   legit    psql -c 'select 1' through the proxy every 2 s (soak-legit), floods or not: every
#            failure counts.
#
# Every --interval seconds (30; 10 below 10 minutes) it samples the proxy's /metrics (RSS,
# goroutines, open fds from the Go and process collectors; connection, rejection, error, login
# timeout and dropped-execution counters), PostgreSQL's client backends, the transactions of each
# stream, faultproxy's fault counters and the legit client's results; one more sample 2.5 s into
# each flood (its peak). Samples go to samples.csv in --out, with the logs of everything.
#
# Verdict: "flat" when, over the samples taken outside floods, the last quarter's maxima are within
# the tolerances of the first quarter's maxima after warm-up (the first tenth of the run): RSS
# +--rss-tol % (20), goroutines +--goroutine-tol (50), open fds +--fd-tol (20); and the legit
# client never failed; and the steady, nplus1 and churn streams had no error; and every flood
# connection was dropped; and the proxy is still running and, once the load has stopped, holds no
# client, login or upstream connection (nor PostgreSQL a backend). Otherwise "NOT flat" with the
# reasons, and exit status 1 (2: the soak itself could not run).
#
# Usage: bench/soak.sh [--duration SECONDS] [--out DIR] [--bin FILE] ...   (--help for all options)

set -euo pipefail

DURATION=3600
INTERVAL=""
FLOOD_EVERY=""
OUT=""
BIN=""
SCALE=5
RATE=1000
CHURN_RATE=50
FLOOD=200
LOGIN_TIMEOUT=5
RSS_TOL=20
GOR_TOL=50
FD_TOL=20
LEGIT_EVERY=2

usage() {
	cat <<'EOF'
Usage: bench/soak.sh [options]

Soak test of the nplus1 proxy: steady pgbench load, connection churn, faults injected between
the proxy and PostgreSQL, and floods of silent clients, for --duration seconds; samples the
proxy's /metrics and prints whether its memory, goroutines and file descriptors stayed flat.
See the comment at the top of the script for the design.

Options:
  --duration SECONDS    length of the soak (default 3600; at least 60)
  --interval SECONDS    sampling interval (default 30; 10 when --duration is below 600)
  --flood N             silent connections per flood burst (default 200; 0: no floods). Above
                        the proxy's --max-login-connections (256) the legit client is refused
                        by design while a burst lasts
  --flood-every SECONDS time between flood bursts (default twice the interval)
  --login-timeout SECS  the proxy's --login-timeout (default 5)
  --rate TPS            steady stream's total rate (default 1000; 0: as fast as it goes)
  --churn-rate TPS      connections per second of the churn stream (default 50)
  --scale S             pgbench -i scale factor (default 5)
  --rss-tol PCT         verdict: RSS growth allowed, percent (default 20)
  --goroutine-tol N     verdict: goroutine growth allowed (default 50)
  --fd-tol N            verdict: open-fd growth allowed (default 20)
  --out DIR             where samples.csv, summary.txt and the logs go
                        (default bench/out/soak-YYYYmmdd-HHMMSS)
  --bin FILE            use this nplus1 binary instead of building ./cmd/nplus1
  -h, --help            this text

Needs: go, curl, PostgreSQL server binaries (Debian package postgresql), pgbench and psql
(postgresql-client). As root, the server runs as the user postgres (or nobody).
Exit status: 0 flat, 1 not flat, 2 the soak could not run.
EOF
}

die() { printf 'soak: %s\n' "$*" >&2; exit 2; }
say() { printf 'soak: %s\n' "$*" >&2; }
die_log() { local log=$1; shift; show_log "$log"; die "$@"; }
# shellcheck source=bench/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
in_range() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2 && $1 <= $3)); } # in_range VALUE MIN MAX

need_value() { (($1 >= 2)) || die "$2 needs a value"; }
while (($#)); do
	case $1 in
	--duration) need_value $# "$1"; DURATION=$2; shift 2 ;;
	--interval) need_value $# "$1"; INTERVAL=$2; shift 2 ;;
	--flood) need_value $# "$1"; FLOOD=$2; shift 2 ;;
	--flood-every) need_value $# "$1"; FLOOD_EVERY=$2; shift 2 ;;
	--login-timeout) need_value $# "$1"; LOGIN_TIMEOUT=$2; shift 2 ;;
	--rate) need_value $# "$1"; RATE=$2; shift 2 ;;
	--churn-rate) need_value $# "$1"; CHURN_RATE=$2; shift 2 ;;
	--scale) need_value $# "$1"; SCALE=$2; shift 2 ;;
	--rss-tol) need_value $# "$1"; RSS_TOL=$2; shift 2 ;;
	--goroutine-tol) need_value $# "$1"; GOR_TOL=$2; shift 2 ;;
	--fd-tol) need_value $# "$1"; FD_TOL=$2; shift 2 ;;
	--out) need_value $# "$1"; OUT=$2; shift 2 ;;
	--bin) need_value $# "$1"; BIN=$2; shift 2 ;;
	--*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

in_range "$DURATION" 60 86400 || die "--duration must be 60..86400 seconds"
if [[ -z $INTERVAL ]]; then if ((DURATION >= 600)); then INTERVAL=30; else INTERVAL=10; fi; fi
in_range "$INTERVAL" 2 $((DURATION / 6)) || die "--interval must be at least 2 s and at most a sixth of --duration"
[[ -n $FLOOD_EVERY ]] || FLOOD_EVERY=$((2 * INTERVAL))
in_range "$FLOOD_EVERY" 1 86400 || die "--flood-every must be a positive number of seconds"
in_range "$FLOOD" 0 5000 || die "--flood must be 0..5000"
in_range "$LOGIN_TIMEOUT" 1 120 || die "--login-timeout must be 1..120 seconds"
in_range "$RATE" 0 1000000 || die "--rate must be a whole number"
in_range "$CHURN_RATE" 1 10000 || die "--churn-rate must be 1..10000"
in_range "$SCALE" 1 1000 || die "--scale must be 1..1000"
in_range "$RSS_TOL" 0 1000 || die "--rss-tol must be a whole number of percent"
in_range "$GOR_TOL" 0 1000000 || die "--goroutine-tol must be a whole number"
in_range "$FD_TOL" 0 1000000 || die "--fd-tol must be a whole number"
if [[ -n $BIN ]]; then
	[[ -x $BIN ]] || die "--bin: $BIN is not an executable file"
	BIN=$(cd -- "$(dirname -- "$BIN")" && pwd)/$(basename -- "$BIN")
fi

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
[[ -n $OUT ]] || OUT=$REPO/bench/out/soak-$(date +%Y%m%d-%H%M%S)
mkdir -p -- "$OUT" || die "--out: cannot create $OUT"
OUT=$(cd -- "$OUT" && pwd)
# Work from /: the server user may not be able to enter the caller's directory.
cd /

# ---------------------------------------------------------------- finding tools

# pg_tool (bench/lib.sh) finds each program.
INITDB=$(pg_tool initdb) || die "initdb not found (PATH, pg_config --bindir, /usr/lib/postgresql/*/bin): install the Debian package postgresql"
PGBIN=$(dirname -- "$(readlink -f -- "$INITDB")")
[[ -x $PGBIN/pg_ctl && -x $PGBIN/postgres ]] || die "pg_ctl/postgres not found next to $INITDB: install the Debian package postgresql"
PG_CTL=$PGBIN/pg_ctl
if [[ -x $PGBIN/pgbench ]]; then PGBENCH=$PGBIN/pgbench; else
	PGBENCH=$(pg_tool pgbench) || die "pgbench not found: install the Debian package postgresql-client"
fi
if [[ -x $PGBIN/psql ]]; then PSQL=$PGBIN/psql; else
	PSQL=$(pg_tool psql) || die "psql not found: install the Debian package postgresql-client"
fi
command -v go >/dev/null 2>&1 || die "go not found on PATH (needed to build bench/faultproxy and nplus1)"
command -v curl >/dev/null 2>&1 || die "curl not found (Debian package curl)"
command -v timeout >/dev/null 2>&1 || die "timeout not found (Debian package coreutils)"
command -v pgrep >/dev/null 2>&1 || die "pgrep not found (Debian package procps)"

# ---------------------------------------------------------------- run-as user


# ---------------------------------------------------------------- cleanup

TMP=""
PG_STARTED=0
NPLUS1_PID=""
FP_PID=""
FLOOD_PID=""
LOOP_PIDS=()


kill_tree() { # kill_tree PID: TERM the process, then its descendants (found by parent id)
	local pid=$1 kids k
	[[ -n $pid ]] || return 0
	kids=$(pgrep -P "$pid" 2>/dev/null || true)
	kill -TERM "$pid" 2>/dev/null || true
	for k in $kids; do kill_tree "$k"; done
}

cleanup() {
	local rc=$? p
	trap '' INT TERM
	[[ -n $TMP && -d $TMP ]] && touch "$TMP/stop"
	for p in "${LOOP_PIDS[@]}" "$FLOOD_PID"; do kill_tree "$p"; done
	stop_pid "$NPLUS1_PID" nplus1
	stop_pid "$FP_PID" faultproxy
	if ((PG_STARTED)); then
		as_db_user "$PG_CTL" -D "$TMP/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
			as_db_user "$PG_CTL" -D "$TMP/data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
		if [[ -f $TMP/data/postmaster.pid ]]; then
			stop_pid "$(head -n1 "$TMP/data/postmaster.pid" 2>/dev/null || true)" postgres
		fi
		cp -- "$TMP/postgres.log" "$OUT/postgres.log" 2>/dev/null || true
	fi
	if [[ -n $TMP && -d $TMP ]]; then rm -rf -- "$TMP"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

for v in $(compgen -e); do
	case $v in PG*) unset "$v" ;; esac
done
export PGSSLMODE=disable PGCONNECT_TIMEOUT=10

TMP=$(mktemp -d "${TMPDIR:-/tmp}/nplus1-soak.XXXXXX")
chmod 755 "$TMP"

now() { printf '%(%s)T' -1; }
nap() { sleep "$1" & wait $! || true; } # interruptible sleep
sleep_until() { local d; while d=$(($1 - $(now))) && ((d > 0)); do nap "$((d > 5 ? 5 : d))"; done; }

# ---------------------------------------------------------------- ports

USED_PORTS=" "
PG_PORT=$(free_port)
FP_PORT=$(free_port)
NP_PORT=$(free_port)
HTTP_PORT=$(free_port)
DB_USER=bench
DB_NAME=postgres

# ---------------------------------------------------------------- build

if [[ -z $BIN ]]; then
	say "building nplus1 (go build ./cmd/nplus1)"
	(cd -- "$REPO" && go build -o "$TMP/nplus1" ./cmd/nplus1) || die "go build ./cmd/nplus1 failed"
	BIN=$TMP/nplus1
fi
say "building bench/faultproxy"
(cd -- "$REPO" && go build -o "$TMP/faultproxy" ./bench/faultproxy) || die "go build ./bench/faultproxy failed"
FP=$TMP/faultproxy
NPLUS1_REV=$(cd -- "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd -- "$REPO" && git status --porcelain --untracked-files=no 2>/dev/null) ]]; then NPLUS1_REV+=" (with local changes)"; fi

# ---------------------------------------------------------------- PostgreSQL

say "creating a throwaway cluster (port $PG_PORT)"
mkdir -m 700 "$TMP/data"
if [[ -n $RUN_AS ]]; then chown "$RUN_AS" "$TMP/data" "$TMP"; fi
as_db_user "$INITDB" -D "$TMP/data" -U "$DB_USER" -A trust -E UTF8 --no-locale -N \
	>"$OUT/initdb.log" 2>&1 || die_log "$OUT/initdb.log" "initdb failed"
cat >>"$TMP/data/postgresql.conf" <<EOF

# nplus1 soak: throwaway cluster, loopback only, durability off
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
max_connections = $((FLOOD + 60))
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
jit = off
log_min_messages = warning
EOF
# The flood's startup packets name soak_flood, who must answer a SCRAM challenge (and never does);
# everyone else is trusted. The first matching line wins, so this one goes first.
{
	echo "host all soak_flood 127.0.0.1/32 scram-sha-256"
	cat "$TMP/data/pg_hba.conf"
} >"$TMP/pg_hba.conf.new"
cat "$TMP/pg_hba.conf.new" >"$TMP/data/pg_hba.conf"
PG_STARTED=1
as_db_user "$PG_CTL" -D "$TMP/data" -l "$TMP/postgres.log" -w -t 60 start >/dev/null 2>&1 ||
	die_log "$TMP/postgres.log" "PostgreSQL did not start"

PG_VERSION=$(psql_at "$PG_PORT" "show server_version") || die "cannot connect to PostgreSQL on 127.0.0.1:$PG_PORT"
psql_at "$PG_PORT" "create role soak_flood login password 'never-sent'" >/dev/null || die "create role soak_flood failed"
say "pgbench -i -s $SCALE"
"$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" "$DB_NAME" >"$OUT/pgbench-init.log" 2>&1 ||
	die_log "$OUT/pgbench-init.log" "pgbench -i failed"

# The N+1 request: a list of 10 accounts, then each one looked up by its id.
NPLUS1_SQL=$TMP/nplus1.sql
{
	echo "\\set aid random(1, 100000 * :scale - 10)"
	echo "SELECT aid, bid, abalance FROM pgbench_accounts WHERE aid BETWEEN :aid AND :aid + 9 ORDER BY aid;"
	echo "\\set k :aid"
	for ((i = 0; i < 10; i++)); do
		echo "SELECT abalance, filler FROM pgbench_accounts WHERE aid = :k;"
		echo "\\set k :k + 1"
	done
} >"$NPLUS1_SQL"

# ---------------------------------------------------------------- faultproxy and nplus1

SETSID=()
if command -v setsid >/dev/null 2>&1; then SETSID=(setsid); fi

FP_STATS=$TMP/faultproxy.stats
say "starting faultproxy on 127.0.0.1:$FP_PORT -> PostgreSQL"
"${SETSID[@]}" "$FP" relay -listen "127.0.0.1:$FP_PORT" -target "127.0.0.1:$PG_PORT" -app soak-fault \
	-cut-every 5s -reset-every 10s -stall-every 10s -stall-for 2s -refuse 0.05 -stats "$FP_STATS" \
	>"$OUT/faultproxy.log" 2>&1 </dev/null &
FP_PID=$!

say "starting nplus1 proxy on 127.0.0.1:$NP_PORT (upstream faultproxy), /metrics on 127.0.0.1:$HTTP_PORT"
"${SETSID[@]}" "$BIN" proxy --listen "127.0.0.1:$NP_PORT" --upstream "127.0.0.1:$FP_PORT" \
	--http "127.0.0.1:$HTTP_PORT" --login-timeout "${LOGIN_TIMEOUT}s" --findings-out "$OUT/findings.jsonl" \
	--log-level warn >"$OUT/nplus1.log" 2>&1 </dev/null &
NPLUS1_PID=$!

for ((i = 0; ; i++)); do
	kill -0 "$FP_PID" 2>/dev/null || die_log "$OUT/faultproxy.log" "faultproxy exited during startup"
	kill -0 "$NPLUS1_PID" 2>/dev/null || die_log "$OUT/nplus1.log" "nplus1 exited during startup"
	if [[ $(psql_at "$NP_PORT" "select 1" 2>/dev/null) == 1 ]] && curl -fs -m 2 -o /dev/null "http://127.0.0.1:$HTTP_PORT/metrics"; then break; fi
	((i < 150)) || die_log "$OUT/nplus1.log" "nplus1 did not answer a query and /metrics within 15 s"
	sleep 0.1
done

# ---------------------------------------------------------------- sampling

METRICS=$TMP/metrics.txt
RUNS=$OUT/runs.txt # one line per pgbench run: stream run start end rc txns failed aborted
: >"$RUNS"
: >"$OUT/legit.log"
: >"$OUT/flood.log"
CSV=$OUT/samples.csv
echo "t_s,phase,rss_bytes,goroutines,open_fds,client_conns_active,logins_active,upstream_conns_active,pg_backends,conns_accepted,conns_rejected,logins_rejected,login_timeouts,conn_errors_protocol,conn_errors_other,conn_errors_server_lost,upstream_connect_errors,executions_dropped,findings_n_plus_one,steady_txns,nplus1_txns,churn_txns,fault_txns,fault_runs_failed,legit_ok,legit_fail,faults_cut,faults_reset,faults_stall,faults_refused,flood_conns,flood_not_dropped" >"$CSV"

metric() { # metric NAME [LABEL-SUBSTRING]: the sum of NAME's series in the last scrape, or empty
	awk -v n="$1" -v l="${2:-}" '
		(index($0, n "{") == 1 || index($0, n " ") == 1) && (l == "" || index($0, l) > 0) { s += $NF; f = 1 }
		END { if (f) printf "%.0f\n", s }' "$METRICS"
}
fp_stat() { awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' "$FP_STATS" 2>/dev/null || echo 0; }
stream_txns() { # stream_txns PREFIX: transactions of the finished runs + the progress of the running ones
	local done_txns running
	done_txns=$(awk -v p="$1" 'index($1, p) == 1 { s += $6 } END { printf "%d\n", s }' "$RUNS")
	running=$(cat "$TMP"/cur-"$1"*.log 2>/dev/null | awk '
		/^## run/ { prev = 0 }
		/^progress: / { t = $2 + 0; s += ($4 + 0) * (t - prev); prev = t }
		END { printf "%.0f\n", s }')
	echo $((done_txns + running))
}
legit_count() { awk -v r="$1" '$2 == r { n++ } END { print n + 0 }' "$OUT/legit.log"; }
flood_sum() { awk -v k="$1=" '{ for (i = 1; i <= NF; i++) if (index($i, k) == 1) s += substr($i, length(k) + 1) } END { print s + 0 }' "$OUT/flood.log"; }

PROXY_DEAD=""
sample() { # sample PHASE: one CSV row
	local t phase=$1 rss gor fds
	t=$(($(now) - START))
	if ! kill -0 "$NPLUS1_PID" 2>/dev/null; then
		[[ -n $PROXY_DEAD ]] || PROXY_DEAD="nplus1 exited at t=${t}s"
	fi
	if ! curl -fs -m 5 -o "$METRICS" "http://127.0.0.1:$HTTP_PORT/metrics"; then
		: >"$METRICS"
		say "t=${t}s: /metrics did not answer"
	fi
	rss=$(metric process_resident_memory_bytes)
	gor=$(metric go_goroutines)
	fds=$(metric process_open_fds)
	if [[ -z $rss && -r /proc/$NPLUS1_PID/status ]]; then
		rss=$(awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$NPLUS1_PID/status")
	fi
	if [[ -z $fds && -d /proc/$NPLUS1_PID/fd ]]; then
		fds=$(find "/proc/$NPLUS1_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
	fi
	local backends
	backends=$(psql_at "$PG_PORT" "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()" 2>/dev/null || echo "")
	printf '%s\n' "$t,$phase,$rss,$gor,$fds,$(metric nplus1_client_connections_active),$(metric nplus1_client_logins_active),$(metric nplus1_upstream_connections_active),$backends,$(metric nplus1_client_connections_accepted_total),$(metric nplus1_client_connections_rejected_total),$(metric nplus1_client_logins_rejected_total),$(metric nplus1_client_login_timeouts_total),$(metric nplus1_client_connection_errors_total 'reason="protocol"'),$(metric nplus1_client_connection_errors_total 'reason="other"'),$(metric nplus1_client_connection_errors_total 'reason="server_lost"'),$(metric nplus1_upstream_connect_errors_total),$(metric nplus1_executions_dropped_total),$(metric nplus1_findings_total 'kind="n_plus_one"'),$(stream_txns steady),$(stream_txns nplus1),$(stream_txns churn),$(stream_txns fault),$(awk 'index($1, "fault") == 1 && ($5 != 0 || $8 > 0) { n++ } END { print n + 0 }' "$RUNS"),$(legit_count ok),$(legit_count fail),$(fp_stat cuts),$(fp_stat resets),$(fp_stat stalls),$(fp_stat refused),$(flood_sum connected),$(flood_sum not_dropped)" >>"$CSV"
}

# ---------------------------------------------------------------- load

# stream_loop NAME APP PGBENCH-ARGS...: pgbench through the proxy until the end of the soak,
# restarted whenever it exits early; one line per run in runs.txt, the output in pgbench-NAME.log.
stream_loop() {
	local name=$1 app=$2 run=0 rem rc start res cur
	shift 2
	cur=$TMP/cur-$name.log
	while [[ ! -e $TMP/stop ]]; do
		rem=$((END - $(now)))
		((rem >= 2)) || break
		run=$((run + 1))
		start=$(now)
		rc=0
		echo "## run $run" >"$cur"
		PGAPPNAME=$app timeout -k 5 $((rem + 60)) "$PGBENCH" "$@" -n -T "$rem" -P 5 \
			-h 127.0.0.1 -p "$NP_PORT" -U "$DB_USER" "$DB_NAME" >>"$cur" 2>&1 </dev/null || rc=$?
		res=$(awk '
			/^number of transactions actually processed: / { split($6, a, "/"); t = a[1] + 0 }
			/^number of failed transactions: / { f = $5 + 0 }
			/aborted in command|client [0-9]+ aborted/ { ab++ }
			END { printf "%d %d %d\n", t, f, ab }' "$cur")
		echo "$name $run $((start - START)) $(($(now) - START)) $rc $res" >>"$RUNS"
		cat "$cur" >>"$OUT/pgbench-$name.log"
		: >"$cur"
		((rc == 0)) || sleep 0.2
	done
}

legit_loop() {
	local t0 ms0 out res flood
	while [[ ! -e $TMP/stop ]] && (($(now) < END)); do
		t0=$(now)
		flood=0
		[[ -e $TMP/flood.on ]] && flood=1
		ms0=$(date +%s%3N)
		res=fail
		if out=$(PGAPPNAME=soak-legit timeout -k 2 20 "$PSQL" -X -A -t -q -h 127.0.0.1 -p "$NP_PORT" -U "$DB_USER" -d "$DB_NAME" -c 'select 1' 2>&1) && [[ $out == 1 ]]; then
			res=ok
		fi
		printf '%d %s %dms flood=%d %s\n' "$((t0 - START))" "$res" "$(($(date +%s%3N) - ms0))" "$flood" "$(printf '%s' "$out" | head -n1)" >>"$OUT/legit.log"
		nap "$LEGIT_EVERY"
	done
}

START=$(now)
END=$((START + DURATION))
HOLD=$((LOGIN_TIMEOUT + 5))
sample start

STEADY_ARGS=(-S -M prepared -c 6 -j 2)
((RATE > 0)) && STEADY_ARGS+=(-R "$RATE")
say "soak for $DURATION s (until $(date -d "@$END" +%H:%M:%S)); output in $OUT"
stream_loop steady soak-steady "${STEADY_ARGS[@]}" &
LOOP_PIDS+=($!)
stream_loop nplus1 soak-nplus1 -f "$NPLUS1_SQL" -M extended -c 2 -j 1 -R 20 &
LOOP_PIDS+=($!)
stream_loop churn soak-churn -S -C -M simple -c 3 -j 1 -R "$CHURN_RATE" &
LOOP_PIDS+=($!)
for k in 1 2 3 4; do
	stream_loop "fault$k" soak-fault -S -M extended -c 1 -R 100 &
	LOOP_PIDS+=($!)
done
legit_loop &
LOOP_PIDS+=($!)

# ---------------------------------------------------------------- main loop: samples and floods

next_flood=$((START + INTERVAL))
bursts=0
for ((tick = START + INTERVAL; tick < END; tick += INTERVAL)); do
	sleep_until "$tick"
	sample quiet
	if [[ -n $PROXY_DEAD ]]; then
		say "$PROXY_DEAD; stopping the load"
		break
	fi
	if ((FLOOD > 0 && $(now) >= next_flood && $(now) + HOLD + 2 < END)); then
		bursts=$((bursts + 1))
		if ((bursts % 2)); then mode=silent; else mode=startup; fi
		touch "$TMP/flood.on"
		t=$(($(now) - START))
		"$FP" flood -addr "127.0.0.1:$NP_PORT" -n "$FLOOD" -mode "$mode" -hold "${HOLD}s" >"$TMP/flood.out" 2>&1 &
		FLOOD_PID=$!
		nap 2.5
		sample flood
		wait "$FLOOD_PID" || true
		FLOOD_PID=""
		rm -f "$TMP/flood.on"
		echo "t=$t $(tail -n1 "$TMP/flood.out")" >>"$OUT/flood.log"
		next_flood=$((next_flood + FLOOD_EVERY))
	fi
done

if [[ -n $PROXY_DEAD ]]; then
	touch "$TMP/stop"
	for p in "${LOOP_PIDS[@]}"; do kill_tree "$p"; done
else
	sleep_until "$END"
fi
# pgbench stops by itself at the end (-T); give the loops a minute to write their last runs.
for ((i = 0; i < 600; i++)); do
	alive=0
	for p in "${LOOP_PIDS[@]}"; do if kill -0 "$p" 2>/dev/null; then alive=1; fi; done
	((alive)) || break
	sleep 0.1
done
touch "$TMP/stop"
for p in "${LOOP_PIDS[@]}"; do kill_tree "$p"; done
LOOP_PIDS=()
sample end

# Once the load has stopped, the proxy must let go of every connection (and PostgreSQL of every backend).
idle_ok=0
for ((i = 0; i < 100; i++)); do
	curl -fs -m 5 -o "$METRICS" "http://127.0.0.1:$HTTP_PORT/metrics" 2>/dev/null || break
	c=$(metric nplus1_client_connections_active) l=$(metric nplus1_client_logins_active) u=$(metric nplus1_upstream_connections_active)
	b=$(psql_at "$PG_PORT" "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()" 2>/dev/null || echo "?")
	if [[ $c == 0 && $l == 0 && $u == 0 && $b == 0 ]]; then idle_ok=1; break; fi
	sleep 0.2
done
sample idle
cp -- "$FP_STATS" "$OUT/faultproxy.stats" 2>/dev/null || true

# ---------------------------------------------------------------- summary and verdict

SUMMARY=$OUT/summary.txt
col() { awk -F, -v c="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next } { print $2, $k }' "$CSV"; }
# stats COLUMN DIVISOR: first min max last over the samples outside floods, and the peak in floods
stats() {
	col "$1" | awk -v d="$2" '
		function f(v) { return d == 1 ? sprintf("%d", v) : sprintf("%.1f", v / d) }
		$2 == "" { next }
		$1 == "flood" { if (fp == "" || $2 + 0 > fp) fp = $2 + 0; next }
		{ v = $2 + 0; if (first == "") first = v; if (min == "" || v < min) min = v; if (max == "" || v > max) max = v; last = v }
		END { printf "%10s %10s %10s %10s %12s\n", f(first), f(min), f(max), f(last), (fp == "" ? "-" : f(fp)) }'
}
# window_max COLUMN FROM TO: max over quiet/end samples with FROM <= t <= TO
window_max() {
	awk -F, -v c="$1" -v a="$2" -v b="$3" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next }
		($2 == "quiet" || $2 == "end") && $1 + 0 >= a && $1 + 0 <= b && $k != "" { if (m == "" || $k + 0 > m) m = $k + 0 }
		END { print m }' "$CSV"
}
last_col() { awk -F, -v c="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next } $k != "" { v = $k } END { print v + 0 }' "$CSV"; }
runs_of() { # runs_of PREFIX: runs txns failed_runs aborted_clients failed_txns
	awk -v p="$1" 'index($1, p) == 1 { n++; t += $6; if ($5 != 0 || $8 > 0) fr++; ab += $8; ft += $7 }
		END { printf "%d %d %d %d %d\n", n, t, fr, ab, ft }' "$RUNS"
}

# The windows: after the warm-up (a tenth of the run, at least one interval) to the end of the first
# quarter, and the last quarter; each holds at least two sampling intervals' worth.
WARMUP=$((DURATION / 10 > INTERVAL ? DURATION / 10 : INTERVAL))
Q1=$((DURATION / 4 > WARMUP + INTERVAL ? DURATION / 4 : WARMUP + INTERVAL))
Q3=$((DURATION - DURATION / 4 < DURATION - 2 * INTERVAL ? DURATION - DURATION / 4 : DURATION - 2 * INTERVAL))
reasons=()
check() { # check COLUMN NAME LIMIT-KIND TOL UNIT
	local first last limit
	first=$(window_max "$1" "$WARMUP" "$Q1")
	last=$(window_max "$1" "$Q3" "$((DURATION + 1000))")
	if [[ -z $first || -z $last ]]; then
		reasons+=("no $2 samples in the first or last quarter")
		return
	fi
	if [[ $3 == pct ]]; then
		limit=$(awk -v f="$first" -v p="$4" 'BEGIN { printf "%.0f", f * (1 + p / 100) }')
	else
		limit=$((first + $4))
	fi
	VERDICT_LINES+=("$(printf '  %-11s first quarter max %12s, last quarter max %12s, limit %12s (+%s%s)' "$2" "$first" "$last" "$limit" "$4" "$5")")
	if ((last > limit)); then reasons+=("$2 grew from $first to $last (limit $limit)"); fi
}
VERDICT_LINES=()
check rss_bytes RSS pct "$RSS_TOL" "%"
check goroutines goroutines abs "$GOR_TOL" ""
check open_fds "open fds" abs "$FD_TOL" ""

read -r st_runs st_txns st_fail st_ab st_ft <<<"$(runs_of steady)"
read -r np_runs np_txns np_fail np_ab np_ft <<<"$(runs_of nplus1)"
read -r ch_runs ch_txns ch_fail ch_ab ch_ft <<<"$(runs_of churn)"
read -r fa_runs fa_txns fa_fail fa_ab fa_ft <<<"$(runs_of fault)"
legit_ok=$(legit_count ok)
legit_fail=$(legit_count fail)
legit_fail_flood=$(awk '$2 == "fail" && $4 == "flood=1" { n++ } END { print n + 0 }' "$OUT/legit.log")
flood_conns=$(flood_sum n)
flood_not_dropped=$(flood_sum not_dropped)
flood_dial_errors=$(flood_sum dial_errors)
flood_outcomes=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^(fatal_[0-9A-Za-z]+|closed|reset|error)=/) { split($i, a, "="); s[a[1]] += a[2] } }
	END { for (k in s) printf "%s %d, ", k, s[k] }' "$OUT/flood.log" | sed 's/, $//')
flood_drop_max=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^drop_s_max=/) { v = substr($i, 12) + 0; if (v > m) m = v } } END { printf "%.2f", m }' "$OUT/flood.log")

((st_fail + st_ft == 0)) || reasons+=("the steady stream had errors: $st_fail of $st_runs pgbench runs failed, $st_ab clients aborted, $st_ft transactions failed")
((np_fail + np_ft == 0)) || reasons+=("the nplus1 stream had errors: $np_fail of $np_runs pgbench runs failed, $np_ab clients aborted, $np_ft transactions failed")
((ch_fail + ch_ft == 0)) || reasons+=("the churn stream had errors: $ch_fail of $ch_runs pgbench runs failed, $ch_ab clients aborted, $ch_ft transactions failed")
((legit_fail == 0)) || reasons+=("the legit client failed $legit_fail times ($legit_fail_flood during floods)")
((flood_not_dropped == 0)) || reasons+=("$flood_not_dropped flood connections were not dropped within ${HOLD}s")
((flood_dial_errors == 0)) || reasons+=("$flood_dial_errors flood connections could not connect")
[[ -z $PROXY_DEAD ]] || reasons+=("$PROXY_DEAD")
if ! kill -0 "$NPLUS1_PID" 2>/dev/null; then [[ -n $PROXY_DEAD ]] || reasons+=("nplus1 exited"); fi
((idle_ok)) || [[ -n $PROXY_DEAD ]] || reasons+=("after the load: $(tail -n1 "$CSV" | awk -F, '{ printf "%s client connections, %s logins, %s upstream connections open in the proxy, %s PostgreSQL backends", $6, $7, $8, $9 }')")

{
	echo "nplus1 soak: ${DURATION}s, PostgreSQL $PG_VERSION, nplus1 $NPLUS1_REV, $(nproc 2>/dev/null || echo '?') CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?') at the end"
	echo "samples every ${INTERVAL}s ($(($(wc -l <"$CSV") - 1)) rows), floods of $FLOOD every ${FLOOD_EVERY}s, --login-timeout ${LOGIN_TIMEOUT}s; warm-up ${WARMUP}s, first quarter ${WARMUP}-${Q1}s, last quarter ${Q3}-${DURATION}s"
	echo
	printf '%-16s %10s %10s %10s %10s %12s\n' "" first min max last "flood peak"
	printf '%-16s %s\n' "RSS (MB)" "$(stats rss_bytes 1048576)"
	printf '%-16s %s\n' "goroutines" "$(stats goroutines 1)"
	printf '%-16s %s\n' "open fds" "$(stats open_fds 1)"
	printf '%-16s %s\n' "logins active" "$(stats logins_active 1)"
	echo
	echo "transactions (pgbench, through the proxy):"
	printf '  %-8s %10d  runs %4d, failed runs %4d, aborted clients %4d, failed txns %d\n' \
		steady "$st_txns" "$st_runs" "$st_fail" "$st_ab" "$st_ft" \
		nplus1 "$np_txns" "$np_runs" "$np_fail" "$np_ab" "$np_ft" \
		churn "$ch_txns" "$ch_runs" "$ch_fail" "$ch_ab" "$ch_ft" \
		fault "$fa_txns" "$fa_runs" "$fa_fail" "$fa_ab" "$fa_ft"
	for s in steady nplus1 churn; do
		awk -v s="$s" '
			/^latency average = / { avg = $4 } /^latency stddev = / { sd = $4 }
			/^rate limit schedule lag: / { gsub(/[()]/, ""); if ($8 + 0 > lag) lag = $8 + 0 }
			/^progress: / { for (i = 1; i < NF; i++) if ($i == "lat" && $(i + 1) + 0 > worst) worst = $(i + 1) + 0 }
			END { if (avg != "") printf "  %-8s latency avg %s ms, stddev %s ms, worst 5-s average %.1f ms, max schedule lag %.1f ms\n", s, avg, sd, worst, lag }' "$OUT/pgbench-$s.log"
	done
	echo "fault-stream runs ended by (pgbench's words):"
	grep -h -E "aborted in command|connection to server .* failed" "$OUT"/pgbench-fault*.log 2>/dev/null |
		sed -E 's/.*(FATAL: .*)$/\1/; s/.*aborted in command [0-9]+ \(SQL\).*perhaps the backend died.*/closed without a message (libpq: perhaps the backend died while processing)/; s/.*connection to server .* failed: (.*)/while logging in: \1/; s/pgbench: error: //; s/client [0-9]+/client N/' |
		sort | uniq -c | sort -rn | awk '{ n = $1; sub(/^ *[0-9]+ /, ""); printf "  %6d  %s\n", n, $0 }'
	echo "faults injected (fault stream only): cuts $(fp_stat cuts) ($(fp_stat cuts_mid) mid-message), resets $(fp_stat resets), stalls $(fp_stat stalls), refused connections $(fp_stat refused) of $(fp_stat targeted)"
	echo "floods: $bursts bursts, $flood_conns connections ($flood_dial_errors could not connect), not dropped $flood_not_dropped, slowest drop ${flood_drop_max}s; ended by: ${flood_outcomes:-none}"
	echo "legit client: $((legit_ok + legit_fail)) attempts, $legit_fail failed ($legit_fail_flood during floods)"
	echo "proxy counters at the end: connections accepted $(last_col conns_accepted), rejected $(last_col conns_rejected), logins rejected $(last_col logins_rejected), login timeouts $(last_col login_timeouts), connection errors protocol $(last_col conn_errors_protocol) / other $(last_col conn_errors_other) / server lost $(last_col conn_errors_server_lost), upstream connect errors $(last_col upstream_connect_errors), executions dropped $(last_col executions_dropped), n_plus_one findings $(last_col findings_n_plus_one)"
	echo
	echo "flat means: last quarter's max within RSS +${RSS_TOL}%, goroutines +${GOR_TOL}, open fds +${FD_TOL} of the first quarter's (after warm-up, outside floods); no legit-client failure; no error in the steady, nplus1 and churn streams; every flood connection dropped; no connection left open after the load"
	for l in "${VERDICT_LINES[@]}"; do echo "$l"; done
	if ((${#reasons[@]} == 0)); then
		echo "verdict: flat"
	else
		echo "verdict: NOT flat: $(printf '%s; ' "${reasons[@]}" | sed 's/; $//')"
	fi
} >"$SUMMARY"
echo
cat "$SUMMARY"
say "samples: $CSV; logs and summary: $OUT"
if ((${#reasons[@]} > 0)); then
	show_log "$OUT/nplus1.log"
	exit 1
fi
