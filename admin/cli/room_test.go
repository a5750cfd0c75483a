package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/admin/backend"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestRoomCommands: aviary room list shows a room a client made, with
// its host and occupant; aviary room destroy empties it.
func TestRoomCommands(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Admin.Admins = []string{"boss@localhost"}
	adm := backend.NewService(cfg, backend.Deps{Logger: servertest.TestLogger()})
	n := servertest.RunServer(t, cfg, server.WithService(adm))
	servertest.CreateUser(t, n, "boss", "boss-secret")
	base := "http://" + adm.Addr().String()
	ctx := context.Background()
	var out, errb bytes.Buffer
	if code := runAdmin(ctx, []string{"login", "--admin", base, "boss"}, nil, strings.NewReader("boss-secret\n"), &out, &errb); code != 0 {
		t.Fatalf("login: %s", errb.String())
	}
	env := []string{"AVIARY_ADMIN_URL=" + base, "AVIARY_ADMIN_TOKEN=" + strings.TrimSpace(out.String())}
	room := func(args ...string) (int, string, string) {
		var o, e bytes.Buffer
		code := runRoom(ctx, args, env, &o, &e)
		return code, o.String(), e.String()
	}
	c := servertest.Dial(t, n)
	c.Login("boss", "boss-secret", "r")
	c.Send(`<presence to='lobby@conference.localhost/boss'/>`)
	c.Await("the join", func(el *wire.Element) bool {
		return el.Name == "presence" && el.From() == "lobby@conference.localhost/boss"
	})
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if code, o, e := room("list"); code != 0 || !strings.Contains(o, "lobby@conference.localhost") || !strings.Contains(o, "test-node") || !strings.Contains(o, "boss (moderator)") {
			return &cliError{code, o + e}
		}
		return nil
	})
	if code, o, e := room("destroy", "lobby@conference.localhost", "--reason", "closing time"); code != 0 || !strings.Contains(o, "destroyed lobby@conference.localhost") {
		t.Fatalf("destroy: %d %s %s", code, o, e)
	}
	gone := c.Await("the destruction", func(el *wire.Element) bool { return el.Name == "presence" && el.Type() == "unavailable" })
	if !strings.Contains(gone.String(), "closing time") {
		t.Errorf("destroy presence: %s", gone)
	}
	if code, _, e := room("destroy", "nosuch@conference.localhost"); code != 1 || !strings.Contains(e, "404") {
		t.Errorf("destroying a room that does not exist: %d %s", code, e)
	}
}

type cliError struct {
	code int
	out  string
}

func (e *cliError) Error() string { return e.out }
