# shellcheck shell=bash
# bench/lib.sh — helpers shared by bench/run.sh and bench/soak.sh: sourced, not run.
# The sourcing script defines die and say first.

show_log() { # show_log FILE...: the last lines of each non-empty FILE, on stderr
	local f
	for f in "$@"; do
		[[ -s $f ]] || continue
		say "last lines of $(basename -- "$f"):"
		tail -n 20 -- "$f" | sed 's/^/    /' >&2
	done
}

# pg_tool NAME: the PostgreSQL program NAME, from PATH, `pg_config --bindir`, or the newest
# /usr/lib/postgresql/*/bin (Debian keeps the server programs off PATH).
pg_tool() {
	local name=$1 dir p
	if p=$(command -v "$name" 2>/dev/null) && [[ -x $p ]]; then
		printf '%s\n' "$p"
		return 0
	fi
	if command -v pg_config >/dev/null 2>&1 && dir=$(pg_config --bindir 2>/dev/null) && [[ -x $dir/$name ]]; then
		printf '%s\n' "$dir/$name"
		return 0
	fi
	for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -rn); do
		if [[ -x $dir/$name ]]; then
			printf '%s\n' "$dir/$name"
			return 0
		fi
	done
	return 1
}

# PostgreSQL and PgBouncer refuse to run as root; as root they run as postgres or nobody.
RUN_AS=""
if ((EUID == 0)); then
	if id -u postgres >/dev/null 2>&1; then RUN_AS=postgres; else RUN_AS=nobody; fi
	id -u "$RUN_AS" >/dev/null 2>&1 || die "running as root and neither user postgres nor nobody exists"
fi

# as_db_user CMD...: run CMD as the server user.
as_db_user() { (exec_as_db_user "$@"); }

# exec_as_db_user CMD...: replace the current (sub)shell with CMD run as the server user;
# `exec_as_db_user CMD &` leaves the program itself (not a wrapping subshell) in $!.
exec_as_db_user() {
	if [[ -z $RUN_AS ]]; then
		exec "$@"
	elif command -v setpriv >/dev/null 2>&1; then
		exec setpriv --reuid="$RUN_AS" --regid="$(id -g "$RUN_AS")" --init-groups -- "$@"
	elif command -v runuser >/dev/null 2>&1; then
		exec runuser -u "$RUN_AS" -- "$@"
	else
		exec su -s /bin/sh "$RUN_AS" -c "exec $(printf '%q ' "$@")"
	fi
}

stop_pid() { # stop_pid PID NAME: TERM, wait up to 5 s, then KILL
	local pid=$1 i
	[[ -n $pid ]] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	say "$2 (pid $pid) did not stop on SIGTERM; killing it"
	kill -KILL "$pid" 2>/dev/null || true
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { # a port below the usual ephemeral range that nothing listens on
	local p i
	for ((i = 0; i < 500; i++)); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
		[[ $USED_PORTS == *" $p "* ]] && continue
		port_in_use "$p" && continue
		USED_PORTS+="$p "
		printf '%s\n' "$p"
		return 0
	done
	die "could not find a free loopback port"
}

psql_at() { # psql_at PORT SQL: one value, or failure
	"$PSQL" -X -A -t -q -h 127.0.0.1 -p "$1" -U "$DB_USER" -d "$DB_NAME" -v ON_ERROR_STOP=1 -c "$2"
}

# start_cluster DIR PORT MAX_CONNECTIONS USER: a throwaway cluster in DIR/data (initdb as the
# server user, USER its superuser, trust on loopback, durability off), started with its log in
# DIR/run (which the server user must be able to write). Sets PG_STARTED=1 for the caller's
# cleanup; needs INITDB and PG_CTL.
start_cluster() {
	local dir=$1 port=$2 maxc=$3 user=$4
	mkdir -m 700 "$dir/data"
	if [[ -n $RUN_AS ]]; then chown "$RUN_AS" "$dir/data"; fi
	if ! as_db_user "$INITDB" -D "$dir/data" -U "$user" -A trust -E UTF8 --no-locale -N >"$dir/initdb.log" 2>&1; then
		show_log "$dir/initdb.log"
		die "initdb failed"
	fi
	cat >>"$dir/data/postgresql.conf" <<EOF

# nplus1 bench: throwaway cluster, loopback only, durability off (the data is regenerated every run)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
max_connections = $maxc
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
jit = off
EOF
	PG_STARTED=1
	if ! as_db_user "$PG_CTL" -D "$dir/data" -l "$dir/run/postgres.log" -w -t 60 start >/dev/null 2>&1; then
		show_log "$dir/run/postgres.log"
		die "PostgreSQL did not start"
	fi
}

# write_pgbouncer_ini DIR PORT PG_PORT USER MAXC: DIR/pgbouncer.ini (and its userlist) for a
# PgBouncer in session mode on 127.0.0.1:PORT in front of the cluster on PG_PORT, trusting USER,
# with room for MAXC clients; it logs to DIR/pgbouncer.log and writes DIR/pgbouncer.pid.
write_pgbouncer_ini() {
	local dir=$1 port=$2 pg_port=$3 user=$4 maxc=$5
	printf '"%s" ""\n' "$user" >"$dir/userlist.txt"
	cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$pg_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = session
max_client_conn = $((maxc + 200))
default_pool_size = $((maxc + 50))
max_db_connections = 0
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
log_connections = 0
log_disconnections = 0
admin_users = $user
EOF
}

# find_pgbouncer: the pgbouncer program, from PATH or /usr/sbin (Debian's place), or failure.
find_pgbouncer() {
	local p
	if p=$(command -v pgbouncer 2>/dev/null); then printf '%s\n' "$p"
	elif [[ -x /usr/sbin/pgbouncer ]]; then printf '%s\n' /usr/sbin/pgbouncer
	else return 1
	fi
}
