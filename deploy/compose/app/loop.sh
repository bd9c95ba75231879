#!/usr/bin/env bash
# A stand-in application for the compose example: every few seconds one
# "request" lists open orders and then looks up each order's customer, one
# query per order (an N+1), its statements carrying the request's trace
# context in a sqlcommenter comment, as OpenTelemetry's instrumentations
# write it. nplus1 reports the loop and exports it onto this trace.
#
#   DATABASE_URL=postgres://... loop.sh       # forever, every $PAUSE seconds (5)
#   DATABASE_URL=postgres://... loop.sh 1     # one request, then exit
#
# Each request prints its trace id: look it up in Jaeger.
set -euo pipefail
: "${DATABASE_URL:?set DATABASE_URL to the proxy, e.g. postgres://app:app@nplus1:6432/app}"
requests="${1:-0}"
pause="${PAUSE:-5}"

psql_() { psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 "$@"; }

until psql_ -c 'SELECT 1' >/dev/null 2>&1; do sleep 1; done
psql_ <<'SQL'
CREATE TABLE IF NOT EXISTS customers (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, status text NOT NULL);
INSERT INTO customers SELECT i, 'customer ' || i FROM generate_series(1, 20) i ON CONFLICT DO NOTHING;
INSERT INTO orders SELECT i, i, 'open' FROM generate_series(1, 20) i ON CONFLICT DO NOTHING;
SQL

hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

n=0
while :; do
	trace=$(hex 16)
	comment="/*route='%2Forders',traceparent='00-$trace-$(hex 8)-01'*/"
	ids=$(psql_ -At -c "SELECT customer_id FROM orders WHERE status = 'open' ORDER BY id LIMIT 10 $comment")
	# The lookups, one statement each, in one session (the source ran in
	# another: the trace context groups them, as a pool's would).
	for id in $ids; do
		echo "SELECT name FROM customers WHERE id = $id $comment;"
	done | psql_ -At >/dev/null
	echo "request: trace $trace, $(echo "$ids" | wc -w) lookups"
	n=$((n + 1))
	if [ "$requests" -gt 0 ] && [ "$n" -ge "$requests" ]; then
		exit 0
	fi
	sleep "$pause"
done
