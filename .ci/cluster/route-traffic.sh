#!/usr/bin/env bash
# Route traffic: the bytes each node exchanges with the Hazelcast member
# for every session logged in and out anywhere in the cluster (issue 23;
# server/balance/STORMS.md, "Route traffic, measured"). On a cluster that
# run-3-nodes.sh started (with in-band registration on, as for storm.sh),
# it adds idle TLS sessions in two steps (STEP1 then STEP2 more per node,
# one aviary-bench -workload idle per node and step), closes them all,
# and prints after each step the cluster's sessions and each node's
# bytes received and sent on its connections to the member (ss -ti), read
# 10 s after the step.
#
# usage: .ci/cluster/route-traffic.sh DIR      (DIR: run-3-nodes.sh's --dir)
#
# Environment: PORT_BASE (default 10000), HZ_PORT (the member's port,
# default 5701), STEP1 (default 2000), STEP2 (default 4000).
set -euo pipefail
cd "$(dirname "$0")/../.."
d=${1:?usage: route-traffic.sh DIR}
base=${PORT_BASE:-10000} hzport=${HZ_PORT:-5701}
step1=${STEP1:-2000} step2=${STEP2:-4000}
bench="$d/route-traffic/aviary-bench"
mkdir -p "$d/route-traffic"
go build -o "$bench" ./cmd/aviary-bench
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

hz() { # node $1: bytes received and sent on its sockets to the member
	local pid
	pid=$(cat "$d/node$1.pid")
	ss -tinpH state established "( dport = :$hzport )" 2>/dev/null | awk -v pid="pid=$pid," '
		/users:/ { keep = index($0, pid) > 0; next }
		keep { for (i = 1; i <= NF; i++) { split($i, a, ":"); if (a[1] == "bytes_received") r += a[2]; if (a[1] == "bytes_sent") s += a[2] }; keep = 0 }
		END { printf "%d %d\n", r, s }'
}
sessions() { curl -s -m 2 "http://127.0.0.1:$(($1 * base + 9090))/metrics" | awk '/^aviary_c2s_sessions / {print int($2)}'; }
total() { echo $(($(sessions 1) + $(sessions 2) + $(sessions 3))); }
report() { echo "[$1] sessions $(total); received/sent node1 $(hz 1), node2 $(hz 2), node3 $(hz 3)"; }
step() { # $1 users per node, $2 prefix
	for i in 1 2 3; do
		"$bench" -servers "127.0.0.1:$((i * base + 5222))" -users "$1" -prefix "$2$i-" -create ibr \
			-concurrency 50 -workload idle -settle 5s -hold 1h -timeout 60s >"$d/route-traffic/$2$i.log" 2>&1 &
		pids+=($!)
	done
}
wait_total() { for _ in $(seq 1 300); do [ "$(total)" "$1" "$2" ] && return; sleep 1; done; }

report start
step "$step1" a
wait_total -ge $((3 * step1))
sleep 10
report "$((3 * step1)) in"
step "$step2" b
wait_total -ge $((3 * (step1 + step2)))
sleep 10
report "$((3 * (step1 + step2))) in"
kill "${pids[@]}"
pids=()
wait_total -le 0
sleep 10
report "all out"
