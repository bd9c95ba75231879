#!/usr/bin/env bash
# bench/replay.sh — how fast nplus1 replay analyzes a recording and a pcap of the
# same traffic, and how much memory it needs.
#
# Generates a workload of STATEMENTS statements (50 interleaved connections, each
# request a list query and ten lookups by id, half of them with a sqlcommenter
# traceparent) as an nplus1 recording (with the value evidence the proxy records
# by default) and as a pcap (Ethernet/IPv4/TCP, as tcpdump -i lo writes it), then
# runs `nplus1 replay --format json --evidence=EVIDENCE` over each ROUNDS times and
# prints the best wall time, statements per second and peak RSS. Everything lives
# in a temporary directory removed on exit.
#
# Usage: bench/replay.sh [--statements N] [--rounds N] [--bin FILE] [--evidence true|false]

set -euo pipefail

STATEMENTS=1000000
ROUNDS=3
BIN=""
EVIDENCE=true

while [ $# -gt 0 ]; do
	case "$1" in
	--statements) STATEMENTS="$2"; shift 2 ;;
	--rounds) ROUNDS="$2"; shift 2 ;;
	--bin) BIN="$2"; shift 2 ;;
	--evidence) EVIDENCE="$2"; shift 2 ;;
	-h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/replay.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
WORK="$(mktemp -d "${TMPDIR:-/tmp}/nplus1-replay-bench.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

if [ -z "$BIN" ]; then
	BIN="$WORK/nplus1"
	go build -o "$BIN" ./cmd/nplus1
fi
go build -o "$WORK/replaygen" ./bench/replaygen

echo "generating $STATEMENTS statements ..." >&2
"$WORK/replaygen" -statements "$STATEMENTS" -out "$WORK"

# Peak RSS: GNU time when installed, else not reported.
TIMECMD=()
if [ -x /usr/bin/time ] && /usr/bin/time -f %M true >/dev/null 2>&1; then
	TIMECMD=(/usr/bin/time -f "%M" -o "$WORK/rss")
fi

printf '%-10s %10s %12s %10s %14s %10s\n' INPUT SIZE_MB STATEMENTS SECONDS STATEMENTS/S PEAK_RSS_MB
for input in workload.jsonl workload.pcap; do
	best=""
	rss=""
	for _ in $(seq "$ROUNDS"); do
		start=$(date +%s%N)
		"${TIMECMD[@]}" "$BIN" replay --format json --progress off --log-level warn --evidence="$EVIDENCE" "$WORK/$input" >"$WORK/out.json"
		end=$(date +%s%N)
		ns=$((end - start))
		if [ -z "$best" ] || [ "$ns" -lt "$best" ]; then best=$ns; fi
		if [ -f "$WORK/rss" ]; then
			r=$(tail -n1 "$WORK/rss")
			if [ -z "$rss" ] || [ "$r" -gt "$rss" ]; then rss=$r; fi
		fi
	done
	n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["statements"])' "$WORK/out.json" 2>/dev/null ||
		grep -o '"statements": [0-9]*' "$WORK/out.json" | head -1 | grep -o '[0-9]*$')
	size=$(($(stat -c %s "$WORK/$input") / 1048576))
	secs=$(awk -v ns="$best" 'BEGIN { printf "%.2f", ns / 1e9 }')
	rate=$(awk -v ns="$best" -v n="$n" 'BEGIN { printf "%d", n / (ns / 1e9) }')
	rssmb="-"
	if [ -n "$rss" ]; then rssmb=$((rss / 1024)); fi
	kind=recording
	[ "$input" = workload.pcap ] && kind=pcap
	printf '%-10s %10s %12s %10s %14s %10s\n' "$kind" "$size" "$n" "$secs" "$rate" "$rssmb"
done
