#!/bin/sh
# Installs the JavaScript clients that server/httpd's js_test.go drives
# (@xmpp/client, stanza, strophe.js, converse.js, playwright-core) into node_modules
# beside this script. Needs node and npm (Debian: nodejs, npm) and the npm
# registry. Idempotent: does nothing when the pinned packages are present.
set -eu
cd "$(dirname "$0")"
if [ -f node_modules/.aviary-installed ] && cmp -s package.json node_modules/.aviary-installed; then
	exit 0
fi
npm install --no-audit --no-fund --loglevel=error --no-save
cp package.json node_modules/.aviary-installed
