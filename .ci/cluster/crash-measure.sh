#!/usr/bin/env bash
# Measures what a crashed node costs (issue 24): the three-node cluster of
# run-3-nodes.sh (in-band registration on), the load tool's -reconnect
# ring over the three c2s listeners with the dispatcher, `kill -9` of
# node2 three seconds after "ring started", and the tool's figures: sent,
# delivered, redelivered (bysrv: of those, messages their sender sent only
# once, so the server's doing), bounced (came back to the sender as an error),
# lost (acknowledged by the server, never delivered, not bounced), stalled
# senders, messages the senders sent again on new streams (resent) and
# those a <failed h/> spared them (saved), reconnect time to 99% and 100%
# of the clients, latency p99 and messages per second.
# Each run starts a fresh cluster (the PostgreSQL data, with the accounts,
# is kept between runs).
#
# usage: .ci/cluster/crash-measure.sh [options] [-- extra aviary-bench flags]
#
#   --runs N        crash runs, one after the other (default 1)
#   --dir DIR       working directory (default /tmp/aviary-crash-measure)
#   --safety on|off cluster.crash_safety for the crash runs (default on)
#   --transports M  aviary-bench -transports (default tcp; e.g.
#                   tcp=8,websocket=1,bosh=1 puts a fifth of the users on
#                   WebSocket and BOSH, through each node's HTTP listener)
#   --perf N        instead of crashes: N pairs of ring runs without a
#                   crash, crash safety on then off, each on a fresh
#                   cluster, alternating so both see the same machine;
#                   prints msgs/s and p99 of each (see --perf-args)
#   --perf-args A   the aviary-bench flags of --perf runs (default: the
#                   crash workload without -interval, a flood:
#                   "-users 3000 -messages 100 -inflight 5")
#   --users N, --messages N, --interval D, --inflight N, --concurrency N
#                   the crash workload (defaults 3000, 100, 100ms, 5, 100:
#                   the issue's)
#
# The cluster runs on its own ports (PORT_BASE 7000, Hazelcast 5741,
# PostgreSQL 15442 unless set): every listener below Linux's ephemeral
# range, which 3,000 clients' connections crowd, and clear of a
# run-3-nodes.sh on the defaults.
#
# Prints one line per run, with the machine's load average (uptime) at the
# end of it, and keeps every run's JSON (DIR/run-N.json) and the nodes'
# logs (DIR/run-N-nodeI.log). Exit status 1 when a crash run lost a
# message. Needs what run-3-nodes.sh needs (.ci/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

runs=1 dir=/tmp/aviary-crash-measure safety=on transports=tcp perf=0
perf_args="-users 3000 -messages 100 -inflight 5"
users=3000 messages=100 interval=100ms inflight=5 concurrency=100
extra=()
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) runs=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	--safety) safety=$2; shift 2 ;;
	--transports) transports=$2; shift 2 ;;
	--perf) perf=$2; shift 2 ;;
	--perf-args) perf_args=$2; shift 2 ;;
	--users) users=$2; shift 2 ;;
	--messages) messages=$2; shift 2 ;;
	--interval) interval=$2; shift 2 ;;
	--inflight) inflight=$2; shift 2 ;;
	--concurrency) concurrency=$2; shift 2 ;;
	--) shift; extra=("$@"); break ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "crash-measure: unexpected argument $1" >&2; exit 2 ;;
	esac
done
case "$safety" in on|off) ;; *) echo "crash-measure: --safety on|off" >&2; exit 2 ;; esac

log() { echo "[crash-measure] $*" >&2; }
export PORT_BASE=${PORT_BASE:-7000} HZ_PORT=${HZ_PORT:-5741} PG_PORT=${PG_PORT:-15442}
mkdir -p "$dir"
go build -o "$dir/aviary-bench" ./cmd/aviary-bench
bench=$dir/aviary-bench
base=$PORT_BASE
servers="127.0.0.1:$((base + 5222)),127.0.0.1:$((2 * base + 5222)),127.0.0.1:$((3 * base + 5222))"
dispatch="http://127.0.0.1:$((base + 5280)),http://127.0.0.1:$((2 * base + 5280)),http://127.0.0.1:$((3 * base + 5280))"
cluster_dir=$dir/cluster
cluster_pid=""
stop_cluster() {
	[ -n "$cluster_pid" ] || return 0
	# TERM, not INT: a script started in the background (as this one
	# starts run-3-nodes.sh) ignores SIGINT.
	kill -TERM "$cluster_pid" 2>/dev/null || true
	wait "$cluster_pid" 2>/dev/null || true
	cluster_pid=""
}
trap 'stop_cluster' EXIT
trap 'exit 130' INT TERM

# start_cluster on|off: a fresh cluster (PostgreSQL data kept), ready.
start_cluster() {
	: >"$dir/cluster.out"
	"$repo/.ci/cluster/run-3-nodes.sh" --dir "$cluster_dir" --keep \
		--set c2s.allow_registration=true --set c2s.registration_limit=-1 \
		--set c2s.max_unauthenticated_per_address=-1 \
		--set "cluster.crash_safety=$([ "$1" = on ] && echo true || echo false)" \
		>"$dir/cluster.out" 2>&1 &
	cluster_pid=$!
	local deadline=$((SECONDS + 300))
	until grep -q "ready. Logs" "$dir/cluster.out"; do
		if ! kill -0 "$cluster_pid" 2>/dev/null || [ $SECONDS -gt $deadline ]; then
			cat "$dir/cluster.out" >&2
			log "the cluster did not start"
			exit 1
		fi
		sleep 1
	done
}

keep_logs() {
	local n
	for n in 1 2 3; do cp "$cluster_dir/node$n.log" "$dir/$1-node$n.log" 2>/dev/null || true; done
}

# field FILE EXPR: a value from a run's JSON.
field() { /usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

if [ "$perf" -gt 0 ]; then
	log "perf: $perf pairs of ring runs without a crash, crash safety on then off: aviary-bench $perf_args"
	printf '%-5s %-6s %10s %9s %9s %6s  %s\n' run safety msgs/s p50_ms p99_ms lost load
	for i in $(seq 1 "$perf"); do
		for s in on off; do
			start_cluster "$s"
			out=$dir/perf-$i-$s.json
			# shellcheck disable=SC2086
			"$bench" -servers "$servers" -dispatch "$dispatch" -workload ring -reconnect $perf_args \
				-concurrency "$concurrency" -drain 30s -scram-cache "$dir/scram.cache" -json "${extra[@]}" \
				>"$out" 2>"$dir/perf-$i-$s.err" || true
			keep_logs "perf-$i-$s"
			stop_cluster
			printf '%-5s %-6s %10.0f %9.1f %9.1f %6s  %s\n' "$i" "$s" \
				"$(field "$out" 'r["ring"]["messages_per_second"]')" \
				"$(field "$out" 'r["ring"]["latency"]["p50_ms"]')" \
				"$(field "$out" 'r["ring"]["latency"]["p99_ms"]')" \
				"$(field "$out" 'r["ring"]["reconnect"]["lost"]')" \
				"$(uptime | sed 's/.*load average: //')"
		done
	done
	exit 0
fi

failed=0
log "$runs crash runs, crash safety $safety, transports $transports"
printf '%-4s %8s %9s %11s %6s %7s %5s %10s %7s %7s %6s %8s %8s %8s %9s %8s  %s\n' \
	run sent delivered redelivered bysrv bounced lost neverAcked stalled resent saved recon recon99 recon100 p99_ms msgs/s load
for i in $(seq 1 "$runs"); do
	start_cluster "$safety"
	out=$dir/run-$i.json err=$dir/run-$i.err
	: >"$err" # before the tool starts: the wait below must not read an old run
	"$bench" -servers "$servers" -dispatch "$dispatch" -transports "$transports" \
		-workload ring -reconnect -users "$users" -messages "$messages" -interval "$interval" \
		-inflight "$inflight" -concurrency "$concurrency" -drain 30s -scram-cache "$dir/scram.cache" \
		-json "${extra[@]}" >"$out" 2>"$err" &
	bench_pid=$!
	until grep -q "ring started" "$err" 2>/dev/null; do
		kill -0 "$bench_pid" 2>/dev/null || { cat "$err" >&2; log "aviary-bench ended before the ring started"; exit 1; }
		sleep 0.2
	done
	sleep 3
	victim=$(cat "$cluster_dir/node2.pid")
	kill -9 "$victim"
	log "run $i: node2 (pid $victim) killed"
	wait "$bench_pid" || true
	keep_logs "run-$i"
	stop_cluster
	lost=$(field "$out" 'r["ring"]["reconnect"]["lost"]')
	[ "$lost" = 0 ] || failed=1
	printf '%-4s %8s %9s %11s %6s %7s %5s %10s %7s %7s %6s %8s %7.1fs %7.1fs %9.0f %8.0f  %s\n' "$i" \
		"$(field "$out" 'r["ring"]["reconnect"]["sent"]')" \
		"$(field "$out" 'r["ring"]["reconnect"]["delivered"]')" \
		"$(field "$out" 'r["ring"]["reconnect"]["redelivered"]')" \
		"$(field "$out" 'r["ring"]["reconnect"].get("redelivered_by_server", "-")')" \
		"$(field "$out" 'r["ring"]["reconnect"].get("bounced", 0)')" \
		"$lost" \
		"$(field "$out" 'r["ring"]["reconnect"]["never_acked"]')" \
		"$(field "$out" 'r["ring"]["stalled_senders"]')" \
		"$(field "$out" 'r["ring"]["reconnect"]["resent"]')" \
		"$(field "$out" 'r["ring"]["reconnect"].get("resends_saved", "-")')" \
		"$(field "$out" 'r["ring"]["reconnect"]["reconnects"]')" \
		"$(field "$out" 'r["ring"]["reconnect"]["reconnect_p99_ms"]/1000')" \
		"$(field "$out" 'r["ring"]["reconnect"]["reconnect_max_ms"]/1000')" \
		"$(field "$out" 'r["ring"]["latency"]["p99_ms"]')" \
		"$(field "$out" 'r["ring"]["messages_per_second"]')" \
		"$(uptime | sed 's/.*load average: //')"
done
exit "$failed"
