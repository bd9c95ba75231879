#!/usr/bin/env bash
# Installs what nplus1's tests, demo and benchmarks need, when it is missing:
# PostgreSQL server binaries and clients (psql, pgbench), PgBouncer, tcpdump,
# Prometheus (for promtool), Node.js with npm (client tests), Chromium (the
# web page's browser tests), and buildah with the CA certificates (the image). Debian/Ubuntu (apt-get); run as root or with
# sudo available. Safe to run again: it installs nothing that is present.
# With --server-only, only the PostgreSQL server (what the demo needs).
set -euo pipefail
server_only=0
[ "${1:-}" = "--server-only" ] && server_only=1

have_pg_server() {
	command -v initdb >/dev/null 2>&1 && return 0
	command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ] && return 0
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

want=()
have_pg_server || want+=(postgresql)
if [ $server_only -eq 0 ]; then
command -v psql >/dev/null 2>&1 && command -v pgbench >/dev/null 2>&1 || want+=(postgresql-client)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || want+=(pgbouncer)
command -v tcpdump >/dev/null 2>&1 || [ -x /usr/sbin/tcpdump ] || want+=(tcpdump)
command -v promtool >/dev/null 2>&1 || want+=(prometheus)
command -v node >/dev/null 2>&1 || want+=(nodejs)
command -v npm >/dev/null 2>&1 || want+=(npm)
command -v curl >/dev/null 2>&1 || want+=(curl) # the README's readiness wait, run by e2e
command -v chromium >/dev/null 2>&1 || want+=(chromium)
command -v buildah >/dev/null 2>&1 || want+=(buildah)
[ -s /etc/ssl/certs/ca-certificates.crt ] || want+=(ca-certificates)
fi

if [ ${#want[@]} -eq 0 ]; then
	exit 0
fi
echo "deps: installing ${want[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "deps: need root or sudo to install ${want[*]}" >&2; exit 1; }
	sudo=sudo
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: no apt-get here; install these yourself: ${want[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
# The postgresql package starts a cluster on install where it can; tests use
# their own throwaway clusters, so that one is left alone.
$sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
