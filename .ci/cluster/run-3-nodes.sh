#!/usr/bin/env bash
# Runs a three-node Aviary cluster on this machine: one throwaway
# PostgreSQL (or the one in $DATABASE_URL), one Hazelcast member and three
# `aviary serve` processes of the domain "localhost", each with its own
# ports, data directory and node name, the same cluster secret and
# database. Put HAProxy in front with .ci/cluster/haproxy.cfg (--haproxy).
#
# usage: .ci/cluster/run-3-nodes.sh [--dir DIR] [--haproxy] [--smoke] [--keep] [--set KEY=VALUE]...
#
#   --dir DIR   working directory (default /tmp/aviary-3nodes): the binary,
#               PostgreSQL's data, the Hazelcast config, node data and logs
#   --haproxy   also start haproxy with .ci/cluster/haproxy.cfg, its ports
#               moved to this PORT_BASE (DIR/haproxy.cfg; clients on
#               127.0.0.1:5222, BOSH/WebSocket on 127.0.0.1:5280 with the
#               default PORT_BASE, PORT_BASE-10000 higher otherwise)
#   --smoke     start everything, check that the three nodes formed one
#               cluster (`aviary cluster status`), stop and exit 0/1
#   --keep      keep DIR when stopping (default: removed unless it failed)
#   --set KEY=VALUE  a configuration key for every node (`aviary serve
#               --set`), e.g. --set c2s.allow_registration=true; repeatable
#
# Environment: DATABASE_URL (use this PostgreSQL instead of a throwaway
# one), AVIARY_HAZELCAST_JAR (default: Maven's copy of 5.5.0, which
# .ci/setup.sh fetches), AVIARY_PG_BINDIR, AVIARY_CLUSTER_SECRET (default:
# random), PORT_BASE (default 10000; see the check below), HZ_PORT and
# PG_PORT (Hazelcast's and PostgreSQL's ports, defaults below).
#
# Ports, node i = 1..3 (with PORT_BASE=10000):
#   c2s STARTTLS  i*PORT_BASE+5222   (15222, 25222, 35222)
#   c2s TLS       i*PORT_BASE+5223
#   HTTP BOSH/WS  i*PORT_BASE+5280   (http://127.0.0.1:15280/http-bind ...)
#   cluster link  i*PORT_BASE+5290
#   admin         i*PORT_BASE+9090   (http://127.0.0.1:19090/)
#   Hazelcast     5701+PORT_BASE/10000-1 (5701), PostgreSQL 15432
#   HAProxy       PORT_BASE-10000 + 5222, 5223, 5280 (PORT_BASE >= 10000)
# Accounts: admin/admin (an administrator), alice/alice, bob/bob.
#
# A node that exits on its own (drained by `aviary node drain`, SIGTERM, or
# rolling-restart.sh) is reported and the rest keeps running; start it
# again with DIR/start-node.sh NAME, which is also the --start command of
# rolling-restart.sh (the script prints the whole command line when ready).
# Ctrl-C stops everything (only the processes this script started).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

dir=/tmp/aviary-3nodes
haproxy=0 smoke=0 keep=0
sets=()
while [ $# -gt 0 ]; do
	case "$1" in
	--dir) dir=$2; shift 2 ;;
	--set) sets+=(--set "$2"); shift 2 ;;
	--haproxy) haproxy=1; shift ;;
	--smoke) smoke=1; shift ;;
	--keep) keep=1; shift ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "run-3-nodes: unexpected argument $1" >&2; exit 2 ;;
	esac
done
base=${PORT_BASE:-10000}
# Below 10000 only without HAProxy (whose ports are PORT_BASE-10000+...),
# and then with HZ_PORT set: useful to keep every listener below Linux's
# ephemeral range (32768 up) on a machine with many connections.
{ [ "$base" -ge 10000 ] || { [ "$haproxy" = 0 ] && [ "$base" -ge 1000 ] && [ -n "${HZ_PORT:-}" ]; }; } &&
	[ $((3 * base + 9090)) -le 65535 ] ||
	{ echo "run-3-nodes: PORT_BASE must be between 10000 and 18815 (from 1000 without --haproxy, with HZ_PORT set)" >&2; exit 2; }
hz_port=${HZ_PORT:-$((5701 + base / 10000 - 1))}
# HAProxy's frontends: 5222, 5223, 5280 with the default PORT_BASE.
hp_c2s=$((base - 10000 + 5222)) hp_tls=$((base - 10000 + 5223)) hp_http=$((base - 10000 + 5280))
pg_port=${PG_PORT:-15432}
secret=${AVIARY_CLUSTER_SECRET:-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')}
hz_name=aviary-local

log() { echo "[run-3-nodes] $*" >&2; }
die() { log "$*"; exit 1; }

pids=()   # haproxy: stopped first
hz_pid="" pg_stop=()
# alive PID: the process runs (a zombie does not count).
alive() { [ -n "$1" ] && ps -o stat= -p "$1" 2>/dev/null | grep -qv Z; }
# node_pid I: the pid of node I's current process (the last start).
node_pid() { cat "$dir/node$1.pid" 2>/dev/null || true; }
cleanup() {
	local rc=$?
	set +e
	log "stopping"
	local p i
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	# SIGINT stops a node at once (SIGTERM would drain it first).
	for i in 1 2 3; do p=$(node_pid $i); alive "$p" && kill -INT "$p" 2>/dev/null; done
	for i in 1 2 3; do
		p=$(node_pid $i)
		for _ in $(seq 300); do alive "$p" || break; sleep 0.1; done
		alive "$p" && kill -KILL "$p" 2>/dev/null
	done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	for p in $hz_pid; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	[ ${#pg_stop[@]} -eq 0 ] || "${pg_stop[@]}" >/dev/null 2>&1
	if [ "$keep" = 1 ] || [ "$rc" != 0 ]; then
		log "kept $dir (logs: node{1,2,3}.log, hazelcast.log, postgres.log)"
	else
		rm -rf "$dir"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$dir"
log "building aviary into $dir"
go build -o "$dir/aviary" ./cmd/aviary
aviary=$dir/aviary

# wait_for SECONDS WHAT CMD...: run CMD every half second until it succeeds.
wait_for() {
	local limit=$1 what=$2; shift 2
	local deadline=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || die "timed out after ${limit}s waiting for $what"
		sleep 0.5
	done
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# PostgreSQL: $DATABASE_URL, or a throwaway cluster (trust auth, loopback).
db=${DATABASE_URL:-}
if [ -z "$db" ]; then
	bindir=${AVIARY_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
	[ -x "$bindir/initdb" ] || die "PostgreSQL not found (install postgresql, set AVIARY_PG_BINDIR or DATABASE_URL)"
	as_pg=()
	if [ "$(id -u)" = 0 ]; then
		as_pg=(runuser -u postgres --)
		mkdir -p "$dir/pg" && chown postgres "$dir/pg"
	fi
	if [ ! -f "$dir/pg/data/PG_VERSION" ]; then
		log "initdb in $dir/pg/data"
		"${as_pg[@]}" "$bindir/initdb" -D "$dir/pg/data" -U postgres -A trust -E UTF8 --locale=C >"$dir/pg-initdb.log" 2>&1 ||
			die "initdb failed: see $dir/pg-initdb.log"
	fi
	log "starting PostgreSQL on 127.0.0.1:$pg_port"
	touch "$dir/postgres.log" && chmod 666 "$dir/postgres.log"
	"${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/pg/data" -l "$dir/postgres.log" -w -t 60 \
		-o "-p $pg_port -k $dir/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null ||
		die "PostgreSQL did not start: see $dir/postgres.log"
	pg_stop=("${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/pg/data" -m fast -w stop)
	wait_for 30 "the aviary database" "${as_pg[@]}" "$bindir/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -tAc 'SELECT 1'
	"${as_pg[@]}" "$bindir/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -tAc \
		"SELECT 1 FROM pg_database WHERE datname='aviary'" | grep -q 1 ||
		"${as_pg[@]}" "$bindir/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qc 'CREATE DATABASE aviary'
	db="postgres://postgres@127.0.0.1:$pg_port/aviary?sslmode=disable"
fi

# Hazelcast: one member, loopback only, tcp-ip join.
jar=${AVIARY_HAZELCAST_JAR:-$HOME/.m2/repository/com/hazelcast/hazelcast/5.5.0/hazelcast-5.5.0.jar}
[ -f "$jar" ] || die "Hazelcast jar not found at $jar (run .ci/setup.sh or set AVIARY_HAZELCAST_JAR)"
command -v java >/dev/null || die "java not found"
cat >"$dir/hazelcast.yaml" <<EOF
hazelcast:
  cluster-name: "$hz_name"
  properties:
    hazelcast.phone.home.enabled: "false"
    hazelcast.logging.type: "jdk"
  jet:
    enabled: false
  network:
    interfaces:
      enabled: true
      interfaces:
        - 127.0.0.1
    port:
      auto-increment: false
      port: $hz_port
    join:
      multicast:
        enabled: false
      auto-detection:
        enabled: false
      tcp-ip:
        enabled: true
        member-list:
          - 127.0.0.1:$hz_port
EOF
log "starting a Hazelcast member on 127.0.0.1:$hz_port"
java -Xms64m -Xmx512m --add-modules java.se \
	--add-exports java.base/jdk.internal.ref=ALL-UNNAMED \
	--add-opens java.base/java.lang=ALL-UNNAMED \
	--add-opens java.base/sun.nio.ch=ALL-UNNAMED \
	--add-opens java.management/sun.management=ALL-UNNAMED \
	--add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED \
	-Dhazelcast.config="$dir/hazelcast.yaml" -Djava.net.preferIPv4Stack=true \
	-cp "$jar" com.hazelcast.core.server.HazelcastMemberStarter >"$dir/hazelcast.log" 2>&1 &
hz_pid=$!
wait_for 120 Hazelcast port_open "$hz_port"

# Accounts (migrations run here first, under their advisory lock).
for u in admin alice bob; do
	"$aviary" user add "$u" --password "$u" --database "$db" >/dev/null 2>&1 || true
done

# start-node.sh NAME starts one node (node1, node2, node3) in the
# background, appending to its log and writing its pid file: used here and
# as rolling-restart.sh's --start command (a drained node exits; this
# script keeps running and the node is started again the same way).
cat >"$dir/start-node.sh" <<EOF
#!/usr/bin/env bash
# usage: $dir/start-node.sh node1|node2|node3
set -euo pipefail
i=\${1#node}
case "\$i" in 1|2|3) ;; *) echo "usage: \$0 node1|node2|node3" >&2; exit 2 ;; esac
base=$base
AVIARY_CLUSTER_SECRET='$secret' nohup "$aviary" serve --config "$dir/node\$i/aviary.yaml" \\
	--database '$db' \\
	--hazelcast "127.0.0.1:$hz_port" --hazelcast-cluster-name "$hz_name" \\
	--node-name "node\$i" \\
	--cluster-listen "127.0.0.1:\$((i * base + 5290))" \\
	--c2s-listen "127.0.0.1:\$((i * base + 5222))" \\
	--c2s-tls-listen "127.0.0.1:\$((i * base + 5223))" \\
	--http-listen "127.0.0.1:\$((i * base + 5280))" \\
	--admin-listen "127.0.0.1:\$((i * base + 9090))" ${sets[*]:+$(printf '%q ' "${sets[@]}")} >>"$dir/node\$i.log" 2>&1 </dev/null &
echo \$! >"$dir/node\$i.pid"
EOF
chmod 700 "$dir/start-node.sh"

for i in 1 2 3; do
	nd=$dir/node$i
	mkdir -p "$nd/data"
	cat >"$nd/aviary.yaml" <<EOF
domain: localhost
data_dir: $nd/data
admin:
  admins: ["admin@localhost"]
http:
  plain_secure: loopback
EOF
	log "starting node$i (c2s 127.0.0.1:$((i * base + 5222)), admin http://127.0.0.1:$((i * base + 9090))/)"
	: >"$dir/node$i.log"
	"$dir/start-node.sh" "node$i"
done
healthy() { curl -sf -m 2 "http://127.0.0.1:$1/healthz"; }
for i in 1 2 3; do
	wait_for 120 "node$i" healthy $((i * base + 9090))
done

status() {
	"$aviary" cluster status --database "$db" --hazelcast "127.0.0.1:$hz_port" --hazelcast-cluster-name "$hz_name" --json
}
three_members() {
	status | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
members = s.get("members") or s.get("Members") or []
sys.exit(0 if len(members) == 3 else 1)'
}
wait_for 60 "three cluster members" three_members
log "cluster formed:"
status >&2

if [ "$haproxy" = 1 ]; then
	command -v haproxy >/dev/null || die "haproxy not installed (apt-get install haproxy)"
	# .ci/cluster/haproxy.cfg is written for PORT_BASE=10000: move every
	# port to this base (through placeholders, so no port is moved twice).
	to_tokens=() to_ports=()
	for i in 1 2 3; do
		for p in 5222 5223 5280; do
			to_tokens+=(-e "s/\b$((i * 10000 + p))\b/@$i-$p@/g")
			to_ports+=(-e "s/@$i-$p@/$((i * base + p))/g")
		done
	done
	to_ports+=(-e "s/bind 127\.0\.0\.1:5222\b/bind 127.0.0.1:$hp_c2s/"
		-e "s/bind 127\.0\.0\.1:5223\b/bind 127.0.0.1:$hp_tls/"
		-e "s/bind 127\.0\.0\.1:5280\b/bind 127.0.0.1:$hp_http/")
	sed "${to_tokens[@]}" "$repo/.ci/cluster/haproxy.cfg" | sed "${to_ports[@]}" >"$dir/haproxy.cfg"
	haproxy -c -q -f "$dir/haproxy.cfg" || die "haproxy refuses $dir/haproxy.cfg"
	log "starting haproxy: c2s on 127.0.0.1:$hp_c2s, BOSH/WebSocket on http://127.0.0.1:$hp_http/"
	haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
	pids+=($!)
	through_haproxy() { curl -sf -m 2 "http://127.0.0.1:$hp_http/dispatch/health"; }
	wait_for 30 "HAProxy to see a healthy node" through_haproxy
	# An XMPP stream header through the TCP frontend.
	stream_ok() {
		HP_C2S=$hp_c2s /usr/bin/python3 - <<'PY'
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(os.environ["HP_C2S"])), timeout=3)
s.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
buf = b""
while b"features>" not in buf:
    d = s.recv(4096)
    if not d:
        sys.exit(1)
    buf += d
sys.exit(0 if b"starttls" in buf else 1)
PY
	}
	wait_for 30 "an XMPP stream through HAProxy on 127.0.0.1:$hp_c2s" stream_ok
fi

if [ "$smoke" = 1 ]; then
	log "smoke check passed"
	exit 0
fi
cat >&2 <<EOF
[run-3-nodes] ready. Logs: $dir/node{1,2,3}.log, $dir/hazelcast.log
  clients:   alice/alice and bob/bob @localhost on 127.0.0.1:$((base + 5222)), :$((2 * base + 5222)), :$((3 * base + 5222))
  BOSH:      http://127.0.0.1:$((base + 5280))/http-bind (and :$((2 * base + 5280)), :$((3 * base + 5280)))
  admin:     http://127.0.0.1:$((base + 9090))/ (admin@localhost / admin)
  switch:    $aviary cluster disable --database '$db' --hazelcast 127.0.0.1:$hz_port --hazelcast-cluster-name $hz_name
  restart a node: $dir/start-node.sh node2
  rolling restart (drains and restarts every node in turn; run in another terminal):
    export AVIARY_ADMIN_TOKEN=\$(echo admin | $aviary admin login --admin http://127.0.0.1:$((base + 9090)) admin@localhost)
    $repo/.ci/cluster/rolling-restart.sh --aviary $aviary --start '$dir/start-node.sh {name}' \\
      node1=http://127.0.0.1:$((base + 9090)) node2=http://127.0.0.1:$((2 * base + 9090)) node3=http://127.0.0.1:$((3 * base + 9090))
  A node that exits (drained, SIGTERM) is reported and not restarted here;
  the rest keeps running. Ctrl-C stops everything.
EOF
# Keep running while Hazelcast (and haproxy) run; report nodes that exit
# and come back.
declare -A down=()
while :; do
	alive "$hz_pid" || die "Hazelcast exited; stopping"
	for p in "${pids[@]}"; do alive "$p" || die "haproxy exited; stopping"; done
	for i in 1 2 3; do
		if alive "$(node_pid $i)"; then
			[ -n "${down[$i]:-}" ] && log "node$i runs again (pid $(node_pid $i))"
			down[$i]=""
		elif [ -z "${down[$i]:-}" ]; then
			log "node$i exited; the others keep running (start it again: $dir/start-node.sh node$i)"
			down[$i]=1
		fi
	done
	sleep 1
done
