// Package interop holds the tests in which clients and servers we did not
// write talk to a real Aviary node: slixmpp (Python), @xmpp/client
// (JavaScript) and the Smack integration test framework (Java). The
// test command installs them (.ci/setup.sh); under CI a missing one fails.
package interop
