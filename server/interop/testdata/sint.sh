#!/usr/bin/env bash
# Runs the Smack integration test framework against an Aviary node, inside
# a network namespace of its own (run under `unshare -n`): SINT has no
# port setting and always dials 5222, which is free in a fresh namespace
# whatever the host runs.
#
# usage: sint.sh AVIARY_BINARY SINT_LIB_DIR WORK_DIR MODE [java -D options...]
#   MODE: ibr (accounts by in-band registration) or admin (accounts made by
#   an admin with XEP-0133 add-user/delete-user over XEP-0050).
set -euo pipefail
aviary=$1 lib=$2 work=$3 mode=$4
shift 4
ip link set lo up

cat > "$work/aviary.yaml" <<YAML
domain: localhost
data_dir: $work/data
log_level: ${AVIARY_SINT_LOG_LEVEL:-warn}
c2s:
  listen: 127.0.0.1:5222
  tls_listen: "off"
  allow_registration: $([ "$mode" = ibr ] && echo true || echo false)
  # SINT registers every test account in-band from 127.0.0.1; the default
  # of 10 registrations per address and hour stops it after ten.
  registration_limit: -1
  # SINT keeps one unauthenticated connection open for the whole run to
  # register accounts in-band; the 30s default would close it mid-run.
  auth_timeout: 15m
admin:
  listen: "off"
  admins: ["sintadmin@localhost"]
cluster:
  listen: "off"
http:
  listen: "off"
  tls_listen: 127.0.0.1:5443
# XEP-0363 for HttpFileUploadIntegrationTest: the generated certificate,
# which Smack trusts below, names localhost.
upload:
  url: https://localhost:5443
plugins:
  settings:
    # XEP-0065 proxy: in this namespace both clients have loopback only,
    # which Smack never offers as its own streamhost, so SOCKS5 file
    # transfer needs the server's relay.
    xep0065.proxy:
      listen: 127.0.0.1:7625
YAML

reg=(-Dsinttest.accountRegistration=inBandRegistration)
if [ "$mode" = admin ]; then
  "$aviary" user add --config "$work/aviary.yaml" --password sintadmin-secret sintadmin >/dev/null
  reg=(-Dsinttest.accountRegistration=serviceAdministration
       -Dsinttest.adminAccountUsername=sintadmin -Dsinttest.adminAccountPassword=sintadmin-secret)
fi

"$aviary" serve --config "$work/aviary.yaml" > "$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/5222) 2>/dev/null && break
  sleep 0.1
done

# Trust the node's generated self-signed certificate, and nothing else.
keytool -importcert -noprompt -alias aviary -file "$work/data/selfsigned-cert.pem" \
  -keystore "$work/trust.p12" -storetype PKCS12 -storepass changeit >/dev/null

sint() {
  java -Xmx512m \
    -Djavax.net.ssl.trustStore="$work/trust.p12" -Djavax.net.ssl.trustStorePassword=changeit -Djavax.net.ssl.trustStoreType=PKCS12 \
    -Dsinttest.service=localhost -Dsinttest.host=127.0.0.1 -Dsinttest.securityMode=required \
    -Dsinttest.enabledConnections=tcp -Dsinttest.replyTimeout=10000 \
    "${reg[@]}" "${extra[@]}" -cp "$lib/*" "$@"
}
extra=("$@")
status=0
sint org.igniterealtime.smack.inttest.SmackIntegrationTestFramework || status=$?
# The OMEMO tests need an OmemoService, which only this launcher
# registers (Smack's libsignal one); it runs the OMEMO classes alone. The
# first run reports them as not possible. A run of chosen classes
# (-Dsinttest.enabledTests) has none of them.
if [ "$mode" = ibr ] && [[ " $* " != *" -Dsinttest.enabledTests="* ]]; then
  echo "=== SINT OMEMO run (SmackOmemoSignalIntegrationTestFramework) ==="
  sint org.igniterealtime.smack.inttest.smack_omemo_signal.SmackOmemoSignalIntegrationTestFramework || status=$?
fi
exit $status
