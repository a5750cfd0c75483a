package assembly_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/assembly"
	"github.com/aviary-im/aviary/server/servertest"
)

// TestNodeStartsEveryPart builds the node `aviary serve` runs, with the
// console off: every service is there in start order, the plugin runtime
// and host run anyway, clients can log in, and it stops cleanly.
func TestNodeStartsEveryPart(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	if cfg.Admin.Listen != "off" {
		t.Fatalf("admin.listen %q, want off", cfg.Admin.Listen)
	}
	n, err := assembly.New(cfg, servertest.TestLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range n.Services() {
		names = append(names, s.Name())
	}
	if want := []string{"chores", "s2s", "httpd", "balance", "plugins", "admin", "certs"}; !reflect.DeepEqual(names, want) {
		t.Errorf("services %v, want %v", names, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n.Plugins.Host() == nil || n.Admin.Plugins() == nil {
		t.Error("the plugin host does not run while the console is off")
	}
	if n.Admin.Addr() != nil {
		t.Errorf("the console listens on %v with admin.listen off", n.Admin.Addr())
	}
	servertest.CreateUser(t, n.Node, "alice", "alice-secret")
	c := servertest.DialAddr(t, n.Addr(server.ListenerC2S).String(), "localhost", false)
	c.Login("alice", "alice-secret", "phone")
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n.Plugins.Host() != nil {
		t.Error("the plugin host still runs after Stop")
	}
}
