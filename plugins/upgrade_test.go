package plugins_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/sqlite"
)

// schema1Data is what a node of schema version 1 had stored for alice:
// a vCard, two private XML fragments, three PEP nodes in the private XML
// table (one with an item, one without, one deleted: an empty record),
// a roster that lets bob see her presence, and her last logout. %s is the
// logout time in the database's own form.
var schema1Data = []string{
	`INSERT INTO vcards (owner, vcard) VALUES ('alice@localhost', '<vCard xmlns="vcard-temp"><FN>Alice Old</FN></vCard>')`,
	`INSERT INTO private_xml (owner, key, data) VALUES
		('alice@localhost', 'storage storage:bookmarks', '<storage xmlns="storage:bookmarks"><conference jid="tea@rooms.localhost" autojoin="true"/></storage>'),
		('alice@localhost', 'prefs urn:example:prefs', '<prefs xmlns="urn:example:prefs">dark</prefs>'),
		('alice@localhost', '#pep urn:xmpp:mood', '<node xmlns="urn:xmpp:aviary:pep" access="presence"><item id="m1" publisher="alice@localhost"><mood xmlns="http://jabber.org/protocol/mood"><happy/></mood></item></node>'),
		('alice@localhost', '#pep urn:xmpp:avatar:metadata', '<node xmlns="urn:xmpp:aviary:pep" access="open"/>'),
		('alice@localhost', '#pep urn:xmpp:gone', '')`,
	`INSERT INTO roster_versions (owner, version) VALUES ('alice@localhost', 1), ('bob@localhost', 1)`,
	`INSERT INTO roster_items (owner, contact, subscription) VALUES
		('alice@localhost', 'bob@localhost', 'both'), ('bob@localhost', 'alice@localhost', 'both')`,
	`INSERT INTO last_activity (owner, at, status) VALUES ('alice@localhost', %s, 'Heading home')`,
}

// writeSchema1 creates the database of a node at schema version 1, with
// schema1Data, where cfg's node will find it: the embedded store's file in
// the data directory, or the PostgreSQL schema of database.url.
func writeSchema1(t *testing.T, cfg *conf.Config, loggedOut time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if cfg.Database.URL != "" {
		migs, err := postgres.Migrations()
		if err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, cfg.Database.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		stmts := []string{
			`CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
			migs[0].SQL,
			fmt.Sprintf(`INSERT INTO schema_migrations (version, name) VALUES (%d, '%s')`, migs[0].Version, migs[0].Name),
		}
		for _, q := range append(stmts, schema1Data...) {
			q = strings.Replace(q, "%s", "'"+loggedOut.Format(time.RFC3339Nano)+"'::timestamptz", 1)
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		return
	}
	migs, err := sqlite.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(cfg.DataDir, "aviary.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stmts := []string{
		`CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`,
		migs[0].SQL,
		fmt.Sprintf(`INSERT INTO schema_version (version, name, applied_at) VALUES (%d, '%s', 0)`, migs[0].Version, migs[0].Name),
	}
	for _, q := range append(stmts, schema1Data...) {
		q = strings.Replace(q, "%s", strconv.FormatInt(loggedOut.UnixMicro(), 10), 1)
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestUpgradeFromSchema1 starts a node on the database a node of schema
// version 1 left (the embedded store, or PostgreSQL with
// AVIARY_TEST_STORE=postgres): migration 2 moves vCards, private XML, PEP
// nodes and last activity onto the module stores, and clients find all of
// it through the plugins as before.
func TestUpgradeFromSchema1(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	loggedOut := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	writeSchema1(t, cfg, loggedOut)
	n := servertest.RunServer(t, cfg)
	for _, u := range []string{"alice", "bob"} {
		servertest.CreateUser(t, n, u, "pw-"+u)
	}
	bob := login(t, n, "bob", "desk")

	t.Run("last activity", func(t *testing.T) {
		el := iq(bob, `<iq type='get' id='%s' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>`)
		q := el.Child("query", "jabber:iq:last")
		if el.Type() != "result" || q == nil || q.Text != "Heading home" {
			t.Fatalf("last activity answer %s", el)
		}
		secs, _ := strconv.Atoi(q.Attr("seconds"))
		if secs < 3600 || secs > 3600+300 {
			t.Fatalf("seconds = %d, want about 3600 (logged out an hour ago)", secs)
		}
	})
	t.Run("vCard of another user", func(t *testing.T) {
		el := iq(bob, `<iq type='get' id='%s' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>`)
		if v := el.Child("vCard", "vcard-temp"); el.Type() != "result" || v == nil || v.ChildText("FN", "") != "Alice Old" {
			t.Fatalf("vCard answer %s", el)
		}
	})
	t.Run("PEP item to a subscribed contact", func(t *testing.T) {
		el := iq(bob, `<iq type='get' id='%s' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:mood'/></pubsub></iq>`)
		want := `<items node="urn:xmpp:mood"><item id="m1" publisher="alice@localhost"><mood xmlns="http://jabber.org/protocol/mood"><happy/></mood></item></items>`
		if ps := el.Child("pubsub", "http://jabber.org/protocol/pubsub"); el.Type() != "result" || ps == nil || len(ps.Children) != 1 || ps.Children[0].String() != want {
			t.Fatalf("PEP items answer %s", el)
		}
	})

	alice := login(t, n, "alice", "home")
	t.Run("own vCard", func(t *testing.T) {
		el := iq(alice, `<iq type='get' id='%s'><vCard xmlns='vcard-temp'/></iq>`)
		if v := el.Child("vCard", "vcard-temp"); el.Type() != "result" || v == nil || v.ChildText("FN", "") != "Alice Old" {
			t.Fatalf("vCard answer %s", el)
		}
	})
	t.Run("private XML", func(t *testing.T) {
		el := iq(alice, `<iq type='get' id='%s'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/><prefs xmlns='urn:example:prefs'/></query></iq>`)
		want := `<query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks"><conference jid="tea@rooms.localhost" autojoin="true"/></storage><prefs xmlns="urn:example:prefs">dark</prefs></query>`
		if el.Type() != "result" || len(el.Children) != 1 || el.Children[0].String() != want {
			t.Fatalf("private XML answer %s", el)
		}
	})
	t.Run("PEP node configuration", func(t *testing.T) {
		el := iq(alice, `<iq type='get' id='%s'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:xmpp:avatar:metadata'/></pubsub></iq>`)
		if el.Type() != "result" || !strings.Contains(el.String(), `<value>open</value>`) {
			t.Fatalf("configure answer %s", el)
		}
		el = iq(alice, `<iq type='get' id='%s'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata'/></pubsub></iq>`)
		if ps := el.Child("pubsub", "http://jabber.org/protocol/pubsub"); el.Type() != "result" || ps == nil || ps.Child("items", "") == nil || len(ps.Child("items", "").Children) != 0 {
			t.Fatalf("items of an empty node %s", el)
		}
	})
	t.Run("deleted PEP node stays deleted", func(t *testing.T) {
		el := iq(alice, `<iq type='get' id='%s'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:gone'/></pubsub></iq>`)
		if condition(el) != "item-not-found" {
			t.Fatalf("deleted node answer %s", el)
		}
		el = iq(alice, `<iq type='set' id='%s'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='urn:xmpp:gone'/></pubsub></iq>`)
		if el.Type() != "result" {
			t.Fatalf("creating the deleted node again: %s", el)
		}
	})
	t.Run("private XML keys of PEP nodes are not fragments", func(t *testing.T) {
		keys, err := n.Store().KeyValue("private").Keys(context.Background(), "alice@localhost")
		if err != nil || strings.Join(keys, ",") != "prefs urn:example:prefs,storage storage:bookmarks" {
			t.Fatalf("private keys = %q, %v", keys, err)
		}
	})
}
