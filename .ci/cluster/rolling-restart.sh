#!/usr/bin/env bash
# Rolling restart of a running Aviary cluster: drain each node in turn, let
# it exit, start it again and wait until it is healthy before the next.
# A binary upgrade is the same run with the new binary installed before
# (or by) the start command.
#
# usage: rolling-restart.sh [options] NAME=ADMIN_URL [NAME=ADMIN_URL...]
#
#   NAME=ADMIN_URL   a node's name (cluster.node_name) and the base URL of
#                    its admin listener, e.g. a=http://10.0.0.1:9090
#   --start CMD      shell command that starts a node again; {name} and
#                    {admin} are replaced. Run in the background. Examples:
#                      --start 'systemctl start aviary@{name}'
#                      --start './start-node.sh {name} >>node-{name}.log 2>&1'
#                    Default: none (something else restarts the node, e.g.
#                    systemd with Restart=always).
#   --token TOKEN    admin API token (default $AVIARY_ADMIN_TOKEN; see
#                    `aviary admin login`)
#   --aviary PATH    the aviary binary (default $AVIARY_BIN, else `aviary`)
#   --drain-timeout S  seconds a node may take to drain and exit (default 600)
#   --ready-timeout S  seconds a node may take to be ready again (default 180)
#   --only NAME      restart only this node (repeatable)
#
# For each node: `aviary node drain NAME` through ANOTHER node's admin API
# (the node stops accepting sessions, sends its clients to the other nodes
# with see-other-host, re-queues what they had not acknowledged, and exits
# with status 0 when empty or at balance.drain_deadline); wait until its
# admin /healthz stops answering (the process is gone); run --start; wait
# for its /readyz to answer 200 and for the other nodes to list it, not
# draining. Any failure stops the run (exit 1) with the cluster otherwise
# untouched: the nodes not yet restarted keep serving.
#
# Prints one line per node: "restarted NAME drain=D.Ds down=D.Ds total=D.Ds"
# (drain: from the request until the node left and its process was gone;
# down: from then until it was ready and listed again).
set -euo pipefail

token=${AVIARY_ADMIN_TOKEN:-}
aviary=${AVIARY_BIN:-aviary}
start_cmd=""
drain_timeout=600
ready_timeout=180
only=()
names=()
urls=()

die() { echo "rolling-restart: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
	--start) start_cmd=$2; shift 2 ;;
	--token) token=$2; shift 2 ;;
	--aviary) aviary=$2; shift 2 ;;
	--drain-timeout) drain_timeout=$2; shift 2 ;;
	--ready-timeout) ready_timeout=$2; shift 2 ;;
	--only) only+=("$2"); shift 2 ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*=*) names+=("${1%%=*}"); urls+=("${1#*=}"); shift ;;
	*) die "unexpected argument $1 (want NAME=ADMIN_URL)" ;;
	esac
done
[ ${#names[@]} -gt 0 ] || die "no nodes given (NAME=ADMIN_URL ...)"
command -v curl >/dev/null || die "curl is needed"
command -v "$aviary" >/dev/null || [ -x "$aviary" ] || die "aviary binary not found: $aviary (use --aviary)"

auth=()
[ -n "$token" ] && auth=(-H "Authorization: Bearer $token")

# http_code URL: the HTTP status of a GET, 000 when nothing answers.
http_code() { curl -s -o /dev/null -m 3 -w '%{http_code}' "${auth[@]}" "$1" 2>/dev/null || true; }

# wait_for SECONDS WHAT CMD...: run CMD every half second until it succeeds.
wait_for() {
	local limit=$1 what=$2; shift 2
	local deadline=$((SECONDS + limit))
	until "$@"; do
		[ $SECONDS -lt $deadline ] || die "timed out after ${limit}s waiting for $what"
		sleep 0.5
	done
}

ready() { [ "$(http_code "$1/readyz")" = 200 ]; }
gone() { [ "$(http_code "$1/healthz")" = 000 ]; }

# listed_ok VIA NAME: node NAME is in VIA's member list, not draining, with
# its client addresses published (so redirects can name it).
listed_ok() {
	curl -s -m 3 "${auth[@]}" "$1/api/nodes" 2>/dev/null | /usr/bin/python3 -c '
import json, sys
name = sys.argv[1]
try:
    nodes = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
sys.exit(0 if any(n.get("name") == name and not n.get("draining") and n.get("addrs") for n in nodes) else 1)' "$2"
}

# another NAME: the admin URL of some other node (the node itself when alone).
another() {
	local i
	for i in "${!names[@]}"; do
		if [ "${names[$i]}" != "$1" ] && ready "${urls[$i]}"; then
			echo "${urls[$i]}"; return
		fi
	done
	for i in "${!names[@]}"; do
		[ "${names[$i]}" = "$1" ] && echo "${urls[$i]}" && return
	done
}

# now: seconds since the epoch with milliseconds.
now() { printf '%s' "${EPOCHREALTIME:-$(date +%s.%N)}"; }
# since T: seconds elapsed since T, one decimal.
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

selected() {
	[ ${#only[@]} -eq 0 ] && return 0
	local o
	for o in "${only[@]}"; do [ "$o" = "$1" ] && return 0; done
	return 1
}

for i in "${!names[@]}"; do
	ready "${urls[$i]}" || die "node ${names[$i]} is not ready (${urls[$i]}/readyz); fix the cluster first"
done

for i in "${!names[@]}"; do
	name=${names[$i]} url=${urls[$i]}
	selected "$name" || continue
	via=$(another "$name")
	echo "rolling-restart: draining $name (through $via)"
	t0=$(now)
	wait_flags=()
	# Through another node, wait until the drained node has left the cluster
	# (it leaves as the last step of stopping).
	[ "$via" != "$url" ] && wait_flags=(--wait --timeout "${drain_timeout}s")
	"$aviary" node drain "$name" --admin "$via" --token "$token" "${wait_flags[@]}" >/dev/null ||
		die "draining $name failed"
	wait_for "$drain_timeout" "$name to drain and exit" gone "$url"
	drain_s=$(since "$t0")
	t1=$(now)
	if [ -n "$start_cmd" ]; then
		cmd=${start_cmd//\{name\}/$name}
		cmd=${cmd//\{admin\}/$url}
		echo "rolling-restart: starting $name: $cmd"
		nohup bash -c "$cmd" >/dev/null 2>&1 &
	fi
	wait_for "$ready_timeout" "$name to be ready" ready "$url"
	if [ "$via" != "$url" ]; then
		wait_for "$ready_timeout" "the cluster to list $name again" listed_ok "$via" "$name"
	fi
	echo "restarted $name drain=${drain_s}s down=$(since "$t1")s total=$(since "$t0")s"
done
echo "rolling-restart: done"
