#!/usr/bin/env bash
# Measures a reconnection storm on a running three-node cluster
# (.ci/cluster/run-3-nodes.sh, same PORT_BASE): PROCS aviary-bench
# processes run a ring of USERS users each over the three nodes with
# -reconnect (stream management, see-other-host, the dispatcher), and
# KILL_AFTER seconds after every ring started node2 gets SIGKILL. Prints,
# as issue 23 asks: messages sent and lost, reconnects, the message p99,
# the seconds from the kill until 99% and 100% of the sessions open when
# the rings started are open again (on node1 and node3), sessions closed on the surviving
# nodes (a cascade: node1 and node3 drop their own clients), streams shed
# by the overload protection, and how long the tools took after the kill.
#
# usage: .ci/cluster/storm.sh DIR      (DIR: run-3-nodes.sh's --dir)
#
# Environment: PORT_BASE (default 10000), PROCS (default 3), USERS (per
# process, default 5000), MESSAGES (default 12), INTERVAL (default 5s),
# KILL_AFTER (default 20), CONCURRENCY (logins in parallel per process,
# default 50), TRANSPORTS (aviary-bench -transports, default tcp; e.g.
# tcp=8,websocket=1,bosh=1: WebSocket and BOSH users connect to the
# nodes' HTTP listeners, the ones -dispatch names), BENCH_FLAGS (more
# aviary-bench flags, e.g. -tls-resume), PREFIX (user names,
# default storm; accounts are made by
# in-band registration, so start the cluster with
# AVIARY_C2S_ALLOW_REGISTRATION=true AVIARY_C2S_REGISTRATION_LIMIT=-1
# AVIARY_C2S_MAX_UNAUTHENTICATED_PER_ADDRESS=-1: every client is 127.0.0.1).
# Each process holds USERS connections: keep it under the open-file limit.
# With PG_PORT and AVIARY_PG_BINDIR it also reports PostgreSQL's
# connections (run-3-nodes.sh's throwaway database).
#
# PROBE_USERS (default 0: none) adds a probe: one more aviary-bench of
# that many users on node1 and node3 only (never disturbed), a ring of a
# message a second from before the kill to well after it, run at
# PROBE_NICE (default -10) so that it gets a core when it asks for one,
# as a client on its own device would. Its latency is what the cluster
# gives sessions the storm did not break, apart from the CPU the storm's
# own clients take on this machine (the load processes' undisturbed
# figure includes that wait). LOAD_NICE (default 0) runs the load
# processes at that niceness: 10 lets the nodes have the cores before the
# storm's own clients, as servers that do not share a machine with their
# clients would.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:?usage: storm.sh DIR}
base=${PORT_BASE:-10000} procs=${PROCS:-3} users=${USERS:-5000}
messages=${MESSAGES:-12} interval=${INTERVAL:-5s} kill_after=${KILL_AFTER:-20}
conc=${CONCURRENCY:-50} prefix=${PREFIX:-storm} transports=${TRANSPORTS:-tcp}
out=$dir/storm
mkdir -p "$out"
log() { echo "[storm $(date -u +%T)] $*" >&2; }

go build -o "$out/aviary-bench" ./cmd/aviary-bench
servers="127.0.0.1:$((base + 5222)),127.0.0.1:$((2 * base + 5222)),127.0.0.1:$((3 * base + 5222))"
dispatch="http://127.0.0.1:$((base + 5280)),http://127.0.0.1:$((2 * base + 5280)),http://127.0.0.1:$((3 * base + 5280))"
scrape() { # scrape NAME: /metrics of the three nodes into $out/NAME.nodeI
	for i in 1 2 3; do curl -sf -m 5 "http://127.0.0.1:$((i * base + 9090))/metrics" >"$out/$1.node$i" 2>/dev/null || : >"$out/$1.node$i"; done
}
sessions() { # sessions I: node I's open client streams
	curl -sf -m 2 "http://127.0.0.1:$(($1 * base + 5280))/dispatch/health" 2>/dev/null |
		/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin).get("sessions",0))' 2>/dev/null || echo 0
}

probe_users=${PROBE_USERS:-0}
probe_servers="127.0.0.1:$((base + 5222)),127.0.0.1:$((3 * base + 5222))"
if [ "$probe_users" -gt 0 ]; then
	# Its accounts made (and logged in once) before the load: registering
	# them while the load's logins flood the database took a minute in one
	# run, and the load's rings were over before the kill.
	"$out/aviary-bench" -servers "$probe_servers" -users "$probe_users" -prefix "${prefix}probe-" -create ibr \
		-concurrency 10 -workload login -timeout 60s -json >"$out/probe-create.json" 2>"$out/probe-create.log" ||
		{ log "creating the probe's accounts failed:"; tail "$out/probe-create.log" >&2; exit 1; }
fi
# Every ring (the load's and the probe's) waits, logged in, for this file:
# they start together however long each took to log in, and the kill
# comes KILL_AFTER seconds into all of them.
go_file=$out/start-rings
rm -f "$go_file"
bench_pids=()
for p in $(seq "$procs"); do
	nice -n "${LOAD_NICE:-0}" "$out/aviary-bench" -servers "$servers" -dispatch "$dispatch" -users "$users" -prefix "$prefix$p-" \
		-transports "$transports" -create ibr -concurrency "$conc" -workload ring -reconnect -messages "$messages" -interval "$interval" \
		-inflight 1 -timeout 60s -drain 60s -max-time 30m -scram-cache "$out/scram-cache" -json -start-file "$go_file" ${BENCH_FLAGS:-} \
		>"$out/bench$p.json" 2>"$out/bench$p.log" &
	bench_pids+=($!)
done
log "started ${#bench_pids[@]} aviary-bench processes of $users users; waiting for their logins"
for p in $(seq "$procs"); do
	until grep -q "ring waiting" "$out/bench$p.log"; do
		kill -0 "${bench_pids[$((p - 1))]}" 2>/dev/null || { log "aviary-bench $p ended early:"; tail "$out/bench$p.log" >&2; exit 1; }
		sleep 1
	done
done
if [ "$probe_users" -gt 0 ]; then
	# Run at a higher priority, as a client on its own device would: its
	# latency is the cluster's, without the load processes' CPU wait.
	nice -n "${PROBE_NICE:--10}" "$out/aviary-bench" -servers "$probe_servers" \
		-users "$probe_users" -prefix "${prefix}probe-" -create ibr -concurrency 10 -workload ring \
		-messages $((kill_after + 60)) -interval 1s -inflight 1 -timeout 60s -drain 30s -max-time 30m \
		-scram-cache "$out/scram-cache" -json -start-file "$go_file" >"$out/probe.json" 2>"$out/probe.log" &
	probe_pid=$!
	until grep -qs "ring waiting" "$out/probe.log"; do
		kill -0 "$probe_pid" 2>/dev/null || { log "the probe ended early:"; tail "$out/probe.log" >&2; exit 1; }
		sleep 1
	done
fi
# A few quiet seconds after the last login, then every ring at once.
sleep 5
touch "$go_file"
for p in $(seq "$procs"); do
	until grep -q "ring started" "$out/bench$p.log"; do sleep 0.2; done
done
s1=$(sessions 1) s2=$(sessions 2) s3=$(sessions 3)
# The target of "logged in again" is who was logged in when the rings
# started (a user whose first login failed is not waited for).
total=$((s1 + s2 + s3))
log "rings started: $s1 + $s2 + $s3 sessions of $((procs * users)) users; uptime: $(uptime)"
rss() { awk '/VmRSS/ {print int($2 / 1024) " MiB"}' "/proc/$1/status" 2>/dev/null || echo "?"; }
for i in 1 2 3; do
	log "node$i: $(sessions $i) sessions, RSS $(rss "$(cat "$dir/node$i.pid")"), $(ls "/proc/$(cat "$dir/node$i.pid")/fd" 2>/dev/null | wc -l) open files"
done
hz=$(pgrep -f "hazelcast.config=$dir/" | head -n 1 || true)
[ -z "$hz" ] || log "Hazelcast member: RSS $(rss "$hz")"
if [ -n "${AVIARY_PG_BINDIR:-}" ] && [ -n "${PG_PORT:-}" ]; then
	log "PostgreSQL connections: $("$AVIARY_PG_BINDIR/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc 'SELECT count(*) FROM pg_stat_activity WHERE datname = '"'aviary'" 2>/dev/null || echo '?')"
fi
sleep "$kill_after"
scrape before
victim=$(cat "$dir/node2.pid")
n2=$(sessions 2)
kill -9 "$victim"
killed=$(date +%s.%N)
log "SIGKILL to node2 (pid $victim, $n2 sessions)"

t99="" t100=""
while :; do
	s=$(($(sessions 1) + $(sessions 3)))
	el=$(echo "$(date +%s.%N) - $killed" | bc)
	[ -z "$t99" ] && [ $((s * 100)) -ge $((total * 99)) ] && t99=$el && log "99% logged in again after ${t99}s"
	[ -z "$t100" ] && [ "$s" -ge "$total" ] && t100=$el && log "100% logged in again after ${t100}s"
	[ -n "$t100" ] && break
	running=0
	for pid in "${bench_pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
	[ "$running" = 1 ] || break
	sleep 0.5
done
scrape after
log "uptime: $(uptime)"
for pid in "${bench_pids[@]}"; do wait "$pid" || log "aviary-bench $pid exited $?"; done
done_el=$(echo "$(date +%s.%N) - $killed" | bc)
[ "$probe_users" -gt 0 ] && { wait "$probe_pid" || log "the probe exited $?"; }
scrape end

OUT=$out PROCS=$procs TOTAL=$total T99=${t99:--} T100=${t100:--} DONE=$done_el N2=$n2 /usr/bin/python3 - <<'PY'
import json, os, re
out = os.environ["OUT"]
def metric(name, node, stage, label=None):
    total = 0.0
    try:
        text = open(f"{out}/{stage}.node{node}").read()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if label and label not in line:
                continue
            total += float(line.rsplit(" ", 1)[1])
    return total
sent = lost = rec = disc = resumed = redirects = 0
p99 = 0.0
und99 = 0.0
logins_failed = 0
for p in range(1, int(os.environ["PROCS"]) + 1):
    try:
        r = json.load(open(f"{out}/bench{p}.json"))
    except Exception as e:
        print(f"bench{p}: no result ({e})")
        continue
    ring = r.get("ring") or {}
    rc = ring.get("reconnect") or {}
    sent += rc.get("sent", 0); lost += rc.get("lost", 0); rec += rc.get("reconnects", 0)
    disc += rc.get("disconnects", 0); resumed += rc.get("resumed", 0); redirects += rc.get("redirects", 0)
    p99 = max(p99, ring.get("latency", {}).get("p99_ms", 0))
    und99 = max(und99, (ring.get("undisturbed_latency") or {}).get("p99_ms", 0))
    logins_failed += (r.get("login") or {}).get("failed", 0)
print(f"sessions at the start {os.environ['TOTAL']}, node2 held {os.environ['N2']} when killed")
print(f"messages sent {sent}, lost {lost}; reconnects {rec} (resumed {resumed}), disconnects {disc}, redirects {redirects}; logins failed {logins_failed}")
print(f"worst message p99 {p99/1000:.1f} s; between sessions the storm did not break: {und99:.0f} ms")
try:
    pr = json.load(open(f"{out}/probe.json"))
    pl = (pr.get("ring") or {}).get("latency") or {}
    pc = (pr.get("ring") or {}).get("counts") or pr.get("ring") or {}
    print(f"probe (never disturbed, niced): {pl.get('count', 0)} messages, p50 {pl.get('p50_ms', 0):.0f} ms, p99 {pl.get('p99_ms', 0):.0f} ms, max {pl.get('max_ms', 0):.0f} ms")
except OSError:
    pass
print(f"logged in again: 99% after {os.environ['T99']} s, 100% after {os.environ['T100']} s; tools done {float(os.environ['DONE']):.0f} s after the kill")
for n in (1, 3):
    closes = {}
    for stage in ("before", "after"):
        try:
            text = open(f"{out}/{stage}.node{n}").read()
        except OSError:
            text = ""
        for m in re.finditer(r'^aviary_c2s_closes_total\{reason="([^"]+)"\} (\S+)', text, re.M):
            closes.setdefault(m.group(1), [0, 0])[stage == "after"] = float(m.group(2))
    dropped = {k: int(v[1] - v[0]) for k, v in closes.items() if v[1] - v[0] > 0}
    shed = int(metric("aviary_c2s_shed_total", n, "after") - metric("aviary_c2s_shed_total", n, "before"))
    print(f"node{n}: sessions closed during the storm by reason {dropped or '{}'}; streams shed {shed}")
PY
