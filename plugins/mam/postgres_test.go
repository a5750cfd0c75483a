package mam_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins/mam"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestRetentionAndDeletionOnPostgres runs on PostgreSQL what the unit
// tests prove on the embedded store: a room's own retention, set through
// its configuration form over c2s and applied by the node's chores, and
// a user deleting their archive with the ad-hoc command.
func TestRetentionAndDeletionOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	cfg := servertest.DefaultConfig(t)
	cfg.Database.URL = pgtest.Shared(t).NewSchema(t)
	n := servertest.RunServer(t, cfg, server.WithChoreInterval(20*time.Millisecond))
	for _, u := range []string{"alice", "bob", "carol"} {
		servertest.CreateUser(t, n, u, "pw-"+u)
	}

	owner := login(t, n, "alice", "rooms", true)
	configure := func(room, fields string) {
		t.Helper()
		owner.Send(`<presence to='%s@conference.localhost/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room)
		owner.Await("joined "+room, func(el *wire.Element) bool {
			return el.Name == "presence" && el.From() == room+"@conference.localhost/alice"
		})
		res := iq(owner, `<iq type='set' id='%s' to='`+room+`@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>`+fields+`</x></query></iq>`)
		if res.Type() != "result" {
			t.Fatalf("configuring %s: %s", room, res)
		}
	}
	configure("short", `<field var='muc#roomconfig_archive_expires'><value>86400</value></field>`)
	configure("long", "")
	ctx := context.Background()
	arch := n.Store().Archive(mam.Store)
	for _, room := range []string{"short", "long"} {
		for _, when := range []time.Time{time.Now().Add(-48 * time.Hour), time.Now()} {
			if _, err := arch.Append(ctx, storage.ArchiveEntry{Owner: "conference.localhost/" + room, With: "alice@localhost", When: when, Value: []byte("<message/>")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(room string) (int, error) {
		p, err := arch.Query(ctx, "conference.localhost/"+room, storage.ArchiveQuery{})
		return len(p.Entries), err
	}
	servertest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if c, err := count("short"); err != nil || c != 1 {
			return fmt.Errorf("the short-lived room keeps %d messages (%v), want 1", c, err)
		}
		return nil
	})
	// The chore that expired the short-lived room's message saw the other.
	if c, err := count("long"); err != nil || c != 2 {
		t.Errorf("the other room keeps %d messages (%v), want 2", c, err)
	}

	testDeleteMyArchive(t, n.Store(), func(user string) *servertest.Client { return login(t, n, user, "r", true) })
}
