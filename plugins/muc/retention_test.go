package muc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins/mam"
	"github.com/aviary-im/aviary/plugins/muc"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/storage"
)

// TestRoomArchiveRetention: a room's owner sets how long its archive keeps
// messages (muc#roomconfig_archive_expires), no longer than
// mam.expire_after; the archive's expiry, run on a node that does not
// host the room, removes that room's old messages and keeps another
// room's; the setting moves with the room when its host dies.
func TestRoomArchiveRetention(t *testing.T) {
	const day = 24 * time.Hour
	net, fa, fb, short := twoNodes(t, true)
	for _, f := range []*fixture{fa, fb} {
		f.h.Cfg.MAM.ExpireAfter = 30 * day
	}
	long := "long" + short // another name, hosted wherever
	owner := func(room, xml string) string {
		return fmt.Sprintf(`<iq type='set' id='%s' from='alice@example.com/a' to='%s@%s'><query xmlns='http://jabber.org/protocol/muc#owner'>%s</query></iq>`, "cfg-"+room, room, svc, xml)
	}
	form := func(fields string) string {
		return `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>` + fields + `</x>`
	}
	expires := func(v string) string {
		return `<field var='muc#roomconfig_archive_expires'><value>` + v + `</value></field>`
	}
	// each sends to the service through a and returns what both nodes sent.
	each := func(room string, xml ...string) []string {
		got := fa.do(room, xml...)
		return append(got, fb.h.Routed()...)
	}

	// The form offers the choices mam.expire_after allows.
	got := each(short, join(short, "alice@example.com/a", "alice"),
		`<iq type='get' id='f1' from='alice@example.com/a' to='`+short+`@`+svc+`'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>`)
	cfgForm := mustFind(t, got, `id="f1"`, `type="result"`)
	for _, want := range []string{`var="muc#roomconfig_archive_expires"`, `<value>86400</value>`, `<value>2592000</value>`, `label="As long as the server keeps messages (30 days)"`} {
		if !strings.Contains(cfgForm, want) {
			t.Errorf("the configuration form lacks %s: %s", want, cfgForm)
		}
	}
	if strings.Contains(cfgForm, `<value>7776000</value>`) {
		t.Errorf("the form offers 90 days past mam.expire_after (30 days): %s", cfgForm)
	}
	// A room may not keep its messages longer than the server does.
	got = each(short, owner(short, form(expires("7776000"))))
	mustFind(t, got, `id="cfg-`+short+`"`, `type="error"`, `not-acceptable`, `muc#roomconfig_archive_expires: at most 2592000 seconds`)
	got = each(short, owner(short, form(expires("soon"))))
	mustFind(t, got, `id="cfg-`+short+`"`, `type="error"`, `bad-request`)
	got = each(short, owner(short, form(expires("86400"))))
	mustFind(t, got, `id="cfg-`+short+`"`, `type="result"`)
	each(long, join(long, "alice@example.com/a", "alice"), owner(long, form("")))

	// Both archives hold a message of two days ago and one of now.
	ctx := context.Background()
	arch := fa.h.St.Archive(mam.Store)
	now := time.Now()
	for _, room := range []string{short, long} {
		for _, when := range []time.Time{now.Add(-2 * day), now} {
			if _, err := arch.Append(ctx, storage.ArchiveEntry{Owner: svc + "/" + room, With: "alice@example.com", When: when, Value: []byte("<message/>")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(room string) int {
		t.Helper()
		p, err := arch.Query(ctx, svc+"/"+room, storage.ArchiveQuery{})
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Entries)
	}
	// The expiry as the cluster's senior node runs it (server/chores.go),
	// here on a, which does not host the short-lived room (b does).
	removed, err := mam.Expire(ctx, arch, fa.h.Cfg.MAM.ExpireAfter, time.Now(), mam.RetentionOf(fa.m))
	if err != nil {
		t.Fatal(err)
	}
	if removed != 1 || count(short) != 1 || count(long) != 2 {
		t.Fatalf("expiry removed %d; %s keeps %d (want 1), %s keeps %d (want 2)", removed, short, count(short), long, count(long))
	}

	// The setting is in the store: the next host has it.
	net.Crash("b")
	net.Leave("b")
	got = fa.do(short, join(short, "alice@example.com/a2", "alice"),
		`<iq type='get' id='f2' from='alice@example.com/a' to='`+short+`@`+svc+`'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>`)
	after := mustFind(t, got, `id="f2"`, `type="result"`)
	if !strings.Contains(after, `label="Keep the room&apos;s archived messages for (seconds)"><value>86400</value>`) {
		t.Errorf("the new host lost the room's retention: %s", after)
	}
}

// TestArchiveRetentionWithTheServiceOff: with muc.enabled false the plugin
// still runs (it claims nothing), and the archive's hourly expiry asks it
// for its rooms' retention: it has none, and must say so, not crash the
// node (a nil store: seen in CI the first time the chore ran).
func TestArchiveRetentionWithTheServiceOff(t *testing.T) {
	h := plugintest.NewHost(t)
	off := false
	h.Cfg.MUC.Enabled = &off
	p := muc.New()
	m := h.Start(t, p)
	rs, err := p.ArchiveRetention(context.Background())
	if err != nil || len(rs) != 0 {
		t.Fatalf("ArchiveRetention with the service off: %v, %v", rs, err)
	}
	if _, err := mam.Expire(context.Background(), h.St.Archive(mam.Store), 0, time.Now(), mam.RetentionOf(m)); err != nil {
		t.Fatalf("mam.Expire with the service off: %v", err)
	}
}
