#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine, idempotently:
# PostgreSQL, the Hazelcast member jar, and the real peers used by interop
# tests. Prints the environment the tests read (sourced by .ci/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[setup] $*" >&2; }

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

[ -n "$(pg_bindir)" ] && [ -x "$(pg_bindir)/initdb" ] || need_apt+=(postgresql)
/usr/bin/python3 -c 'import slixmpp' >/dev/null 2>&1 || need_apt+=(python3-slixmpp)
/usr/bin/python3 -c 'import aioxmpp' >/dev/null 2>&1 || need_apt+=(python3-aioxmpp)
have go-sendxmpp || need_apt+=(go-sendxmpp)
have prosody || need_apt+=(prosody)
have ejabberdctl || [ -x /usr/sbin/ejabberdctl ] || need_apt+=(ejabberd)
have chromium || need_apt+=(chromium)
have openssl || need_apt+=(openssl)
# XEP-0215 (plugins/extdisco): a TURN server that takes the TURN REST API
# credentials the server hands out. XEP-0114 (server/component): the IRC
# gateway biboumi as a component, and an IRC server for it to reach.
have turnserver && have turnutils_uclient || need_apt+=(coturn)
have biboumi || need_apt+=(biboumi)
have ngircd || [ -x /usr/sbin/ngircd ] || need_apt+=(ngircd)

if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  # Packages must not start their own daemons: tests start throwaway ones.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  if [ ! -f /tmp/.aviary-apt-updated ]; then
    apt-get update -qq >&2 && touch /tmp/.aviary-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
  rm -f /usr/sbin/policy-rc.d
  # Debian's postinst may have started daemons anyway; tests use their own.
  for svc in prosody ejabberd postgresql coturn biboumi ngircd; do
    service "$svc" stop >/dev/null 2>&1 || true
  done
  pkill -x prosody 2>/dev/null || true
fi

hz_version=5.5.0
hz_jar="$HOME/.m2/repository/com/hazelcast/hazelcast/$hz_version/hazelcast-$hz_version.jar"
if [ ! -f "$hz_jar" ]; then
  log "fetching com.hazelcast:hazelcast:$hz_version from Maven Central"
  mvn -q -B dependency:get -Dartifact=com.hazelcast:hazelcast:$hz_version >&2
fi

# The Smack integration test framework and its dependencies, for the
# interop suite (server/interop). 4.5.0-beta5 is the newest release on Maven
# Central; the pom names it.
# The marker names the pom's checksum: a changed pom fetches again.
sint_lib="$HOME/.cache/aviary/sint-lib"
sint_pom_sum=$(sha256sum .ci/sint/pom.xml | cut -c1-16)
if [ ! -f "$sint_lib/.complete-$sint_pom_sum" ]; then
  log "fetching the Smack integration test framework from Maven Central"
  rm -rf "$sint_lib"
  mvn -q -B -f .ci/sint/pom.xml dependency:copy-dependencies -DoutputDirectory="$sint_lib" >&2
  touch "$sint_lib/.complete-$sint_pom_sum" "$sint_lib/.complete"
fi

# Pebble, Let's Encrypt's ACME test server, for the certificate tests
# (server/certs): built from the Go module proxy into a cache directory,
# not a dependency of the server.
pebble_version=v2.10.3
pebble_dir="$HOME/.cache/aviary/pebble-$pebble_version"
if [ ! -x "$pebble_dir/pebble" ]; then
  log "building github.com/letsencrypt/pebble/v2/cmd/pebble@$pebble_version"
  GOBIN="$pebble_dir" go install "github.com/letsencrypt/pebble/v2/cmd/pebble@$pebble_version" >&2
fi

# JavaScript clients and playwright-core for the interop and browser tests.
sh server/httpd/testdata/js/install.sh >&2

echo "export AVIARY_PG_BINDIR=$(pg_bindir)"
echo "export AVIARY_SINT_LIB=$sint_lib"
echo "export AVIARY_HAZELCAST_JAR=$hz_jar"
echo "export AVIARY_PEBBLE=$pebble_dir/pebble"
