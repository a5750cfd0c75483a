package mam_test

import (
	"context"
	"fmt"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/adhoc"
	"github.com/aviary-im/aviary/plugins/mam"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// deleteMyArchive runs "Delete my message archive" as a client does: the
// command's form, then the form submitted with confirm set to confirm.
// It returns the completed command.
func deleteMyArchive(t *testing.T, c *servertest.Client, confirm string) *wire.Element {
	t.Helper()
	first := iq(c, `<iq type='set' id='%s' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='`+mam.NodeDeleteArchive+`' action='execute'/></iq>`)
	cmd := first.Child("command", adhoc.NS)
	if first.Type() != "result" || cmd == nil || cmd.Attr("status") != "executing" {
		t.Fatalf("executing the command: %s", first)
	}
	form := cmd.Child("x", adhoc.NSData)
	if form == nil || !strings.Contains(form.String(), `var="confirm"`) {
		t.Fatalf("no confirmation form: %s", first)
	}
	done := iq(c, `<iq type='set' id='%s' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='`+mam.NodeDeleteArchive+
		`' sessionid='`+cmd.Attr("sessionid")+`' action='complete'><x xmlns='jabber:x:data' type='submit'><field var='confirm'><value>`+confirm+`</value></field></x></command></iq>`)
	cmd = done.Child("command", adhoc.NS)
	if done.Type() != "result" || cmd == nil || cmd.Attr("status") != "completed" {
		t.Fatalf("completing the command: %s", done)
	}
	return cmd
}

// TestDeleteMyArchive: a user lists and runs the ad-hoc command that
// deletes their own archive; nothing goes until they confirm, their
// contacts' copies stay, and what they archive afterwards is kept.
func TestDeleteMyArchive(t *testing.T) {
	n := startNode(t, nil)
	testDeleteMyArchive(t, n.Store(), func(user string) *servertest.Client { return login(t, n, user, "r", true) })
}

func testDeleteMyArchive(t *testing.T, st storage.Store, login func(user string) *servertest.Client) {
	alice, bob, carol := login("alice"), login("bob"), login("carol")
	chat(alice, "bob@localhost", "one")
	bob.Await("one", func(el *wire.Element) bool { return el.ChildText("body", "") == "one" })
	chat(bob, "alice@localhost", "two")
	alice.Await("two", func(el *wire.Element) bool { return el.ChildText("body", "") == "two" })
	chat(carol, "bob@localhost", "three")
	bob.Await("three", func(el *wire.Element) bool { return el.ChildText("body", "") == "three" })

	items := iq(alice, `<iq type='get' id='%s' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>`)
	if !strings.Contains(items.String(), `node="`+mam.NodeDeleteArchive+`" name="Delete my message archive"`) {
		t.Fatalf("the command is not listed: %s", items)
	}
	if note := deleteMyArchive(t, alice, "0").Child("note", ""); note == nil || !strings.Contains(note.AllText(), "Nothing was deleted") {
		t.Fatalf("unconfirmed: %v", note)
	}
	if p := query(alice, "", ""); strings.Join(p.bodies(), ",") != "one,two" {
		t.Fatalf("an unconfirmed deletion deleted: %v", p.bodies())
	}
	note := deleteMyArchive(t, alice, "1").Child("note", "")
	if note == nil || note.Attr("type") != "info" || !strings.Contains(note.AllText(), "deleted (2 messages)") {
		t.Fatalf("deletion note: %v", note)
	}
	if p := query(alice, "", ""); len(p.results) != 0 {
		t.Errorf("alice's archive after deleting it: %v", p.bodies())
	}
	if p := query(bob, "", ""); strings.Join(p.bodies(), ",") != "one,two,three" {
		t.Errorf("bob's archive %v; his copies must stay", p.bodies())
	}
	// The store agrees: nothing of alice's is left, bob's three are.
	ctx := context.Background()
	for owner, want := range map[string]int{"alice@localhost": 0, "bob@localhost": 3} {
		if p, err := st.Archive(mam.Store).Query(ctx, owner, storage.ArchiveQuery{}); err != nil || len(p.Entries) != want {
			t.Errorf("%s has %d entries in the store (%v), want %d", owner, len(p.Entries), err, want)
		}
	}
	chat(alice, "bob@localhost", "after")
	bob.Await("after", func(el *wire.Element) bool { return el.ChildText("body", "") == "after" })
	if p := query(alice, "", ""); strings.Join(p.bodies(), ",") != "after" {
		t.Errorf("alice's archive after a new message: %v", p.bodies())
	}
}

// gatedArchive, when hold is set, holds every batch the message archive
// writes until open is closed; the first DeleteBefore through any
// gatedArchive sharing open closes it, so a batch queued before a
// deletion commits just after it.
type gatedArchive struct {
	storage.Archive
	hold bool
	open chan struct{}
	once *stdsync.Once
}

func (g gatedArchive) AppendBatch(ctx context.Context, es []storage.ArchiveEntry) ([]int64, error) {
	if !g.hold {
		return g.Archive.AppendBatch(ctx, es)
	}
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Archive.AppendBatch(ctx, es)
}

func (g gatedArchive) DeleteBefore(ctx context.Context, owner string, t time.Time) (int, error) {
	n, err := g.Archive.DeleteBefore(ctx, owner, t)
	g.once.Do(func() { close(g.open) })
	return n, err
}

type gatedStore struct {
	storage.Store
	arch gatedArchive
}

func (g gatedStore) Archive(name string) storage.Archive {
	if name == mam.Store {
		return g.arch
	}
	return g.Store.Archive(name)
}

// TestDeleteMyArchiveClusterWide: a message another node had queued for
// the archive (group commit) when the user deleted it is deleted too,
// once it is written; the contact's copy of it stays.
func TestDeleteMyArchiveClusterWide(t *testing.T) {
	ctx := context.Background()
	st := plugintest.NewHost(t).St
	gate := gatedArchive{Archive: st.Archive(mam.Store), open: make(chan struct{}), once: &stdsync.Once{}}
	ha := plugintest.NewHostWithStore(t, gatedStore{Store: st, arch: gate})
	gate.hold = true
	hb := plugintest.NewHostWithStore(t, gatedStore{Store: st, arch: gate})
	for i, h := range []*plugintest.Host{ha, hb} {
		h.Cfg.Cluster.NodeName = fmt.Sprint("node", i)
		h.Cfg.MAM.MaxPage = 100
		h.Cfg.Database.Timeout = 5 * time.Second
	}
	plugintest.Join(ha, hb)
	ma := ha.Start(t, mam.New(), adhoc.New())
	mb := hb.Start(t, mam.New())

	// Already written: alice's copy of an older message.
	msg := func(body string) *wire.Element {
		return wire.New("message", "type", "chat").Append(wire.New("body").SetText(body))
	}
	if id := mam.Lookup(ma).Archive().Add(ctx, "alice@example.com", "bob@example.com", msg("written"), nil); id == 0 {
		t.Fatal("not archived")
	}
	if err := mam.Lookup(ma).Archive().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Queued on b, not yet written: both copies of a newer one.
	archB := mam.Lookup(mb).Archive()
	var written stdsync.WaitGroup
	written.Add(2)
	for _, owner := range []string{"alice@example.com", "bob@example.com"} {
		if id := archB.Add(ctx, owner, "x", msg("queued"), func(int64, error) { written.Done() }); id == 0 {
			t.Fatal("not queued")
		}
	}

	// Alice deletes through node a.
	reply := ha.IQ(t, ma, plugins.ToServer, `<iq type='set' id='d1' from='alice@example.com/r' to='example.com'><command xmlns='http://jabber.org/protocol/commands' node='`+mam.NodeDeleteArchive+
		`' action='complete'><x xmlns='jabber:x:data' type='submit'><field var='confirm'><value>1</value></field></x></command></iq>`)
	if !strings.Contains(reply, `status="completed"`) || !strings.Contains(reply, `type="info"`) {
		t.Fatalf("deletion: %s", reply)
	}
	written.Wait()
	for owner, want := range map[string]int{"alice@example.com": 0, "bob@example.com": 1} {
		p, err := st.Archive(mam.Store).Query(ctx, owner, storage.ArchiveQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Entries) != want {
			t.Errorf("%s has %d archived messages after alice deleted hers, want %d", owner, len(p.Entries), want)
		}
	}
}

// TestDeleteOnlyForLocalUsers: the command is not offered to, and refuses,
// users of other domains.
func TestDeleteOnlyForLocalUsers(t *testing.T) {
	h := plugintest.NewHost(t)
	h.Cfg.MAM.MaxPage = 100
	m := h.Start(t, mam.New(), adhoc.New())
	reply := h.IQ(t, m, plugins.ToServer, `<iq type='set' id='d1' from='mallory@elsewhere.org/r' to='example.com'><command xmlns='http://jabber.org/protocol/commands' node='`+mam.NodeDeleteArchive+`' action='execute'/></iq>`)
	if !strings.Contains(reply, `type="error"`) || !strings.Contains(reply, "<forbidden") {
		t.Errorf("a remote user ran the command: %s", reply)
	}
	items, _ := m.DiscoNodeItems(context.Background(), "mallory@elsewhere.org/r", adhoc.NS)
	if len(items) != 0 {
		t.Errorf("commands listed to a remote user: %v", items)
	}
}
