#!/usr/bin/env bash
# The whole test command: set up services and peers, then run every test.
# Tests start their own throwaway PostgreSQL clusters and Hazelcast members
# from the binaries located here; under CI=true a missing service fails.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(bash .ci/setup.sh)"
export AVIARY_REQUIRE_SERVICES=1

echo "== gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted"; exit 1; fi
go vet ./...

echo "== go test (race)"
rm -f artifacts/smack-sint*.txt
go test -race -count=1 -timeout 15m ./...
echo "== Smack integration test framework (counted by server/interop)"
cat artifacts/smack-sint*.txt

echo "== the server and interop tests again, on PostgreSQL instead of the embedded store"
AVIARY_TEST_STORE=postgres go test -count=1 -timeout 10m ./server/c2s ./plugins
AVIARY_TEST_STORE=postgres go test -count=1 -timeout 10m \
  -run 'TestSlixmpp|TestXMPPJSOverTCP|TestFederation' ./server/interop

echo "== fuzz the stream reader briefly"
# Minimizing each new input runs up to 60 s by default, which took most of
# the 20 s of a fresh clone's first run (~60,000 execs instead of ~900,000);
# a bounded minimization leaves the time to fuzzing.
go test -run '^$' -fuzz '^FuzzReader$' -fuzztime 20s -fuzzminimizetime 200x ./wire
go test -run '^$' -fuzz '^FuzzScannerMatchesEncodingXML$' -fuzztime 20s -fuzzminimizetime 200x ./wire
