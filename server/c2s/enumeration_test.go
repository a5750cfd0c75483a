package c2s_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

// scramFirst sends a SCRAM-SHA-256 client-first message for user and
// returns the salt and iteration count of the server's challenge.
func scramFirst(t *testing.T, n *server.Node, user string) (salt, iterations string) {
	t.Helper()
	c := servertest.DialTLS(t, n)
	c.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>%s</auth>",
		servertest.Base64("n,,n="+user+",r=fyko+d2lbbFgONRv9qkxdawL"))
	ch := c.ExpectName("challenge")
	first, err := base64.StdEncoding.DecodeString(strings.TrimSpace(ch.Text))
	if err != nil {
		t.Fatalf("challenge %s: %v", ch, err)
	}
	for _, f := range strings.Split(string(first), ",") {
		switch {
		case strings.HasPrefix(f, "s="):
			salt = f[2:]
		case strings.HasPrefix(f, "i="):
			iterations = f[2:]
		}
	}
	if salt == "" || iterations == "" {
		t.Fatalf("server-first-message %q", first)
	}
	return salt, iterations
}

// TestUnknownUserSaltIsShared: an unknown user's SCRAM salt must look
// like a real one, which never changes: the same on every node and after
// a restart, with the iteration count real users get. It came from a
// secret made per process, so two nodes (or one node before and after a
// restart) answered differently for an unknown user and the same for a
// real one. Two nodes on one PostgreSQL store without a cluster secret
// (the key is created once in the store), then a node restarted.
func TestUnknownUserSaltIsShared(t *testing.T) {
	url := pgtest.Shared(t).NewSchema(t)
	config := func() *conf.Config {
		cfg := servertest.DefaultConfig(t)
		cfg.Database.URL = url
		return cfg
	}
	a := servertest.RunServer(t, config())
	b := servertest.RunServer(t, config())
	servertest.CreateUser(t, a, "alice", "alicepw")

	realSalt, realIter := scramFirst(t, a, "alice")
	saltA, iterA := scramFirst(t, a, "nobody")
	saltB, iterB := scramFirst(t, b, "nobody")
	if saltA != saltB {
		t.Errorf("nodes on one store give an unknown user different salts: %s, %s", saltA, saltB)
	}
	if iterA != realIter || iterB != realIter {
		t.Errorf("iterations: unknown user %s and %s, real user %s", iterA, iterB, realIter)
	}
	if saltA == realSalt {
		t.Error("the unknown user has alice's salt")
	}
	if other, _ := scramFirst(t, a, "somebody"); other == saltA {
		t.Error("two unknown users have one salt")
	}

	// A restart keeps it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	b2 := servertest.RunServer(t, config())
	if again, _ := scramFirst(t, b2, "nobody"); again != saltA {
		t.Errorf("after a restart the unknown user's salt changed: %s, then %s", saltA, again)
	}
}

// TestUnknownUserSaltFromClusterSecret: nodes with the same cluster
// secret derive the same fake salts, whatever store they use.
func TestUnknownUserSaltFromClusterSecret(t *testing.T) {
	config := func() *conf.Config {
		cfg := servertest.DefaultConfig(t)
		cfg.Cluster.Secret = "shared-cluster-secret"
		return cfg
	}
	a := servertest.RunServer(t, config()) // each its own embedded store
	b := servertest.RunServer(t, config())
	saltA, _ := scramFirst(t, a, "nobody")
	if saltB, _ := scramFirst(t, b, "nobody"); saltA != saltB {
		t.Errorf("nodes with one cluster secret give an unknown user different salts: %s, %s", saltA, saltB)
	}
}
