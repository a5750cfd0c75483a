package router

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/local"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// flakyStore fails or hangs the roster and offline repositories on demand.
type flakyStore struct {
	storage.Store
	fail error // returned by every wrapped call when set
	hang bool  // block until the context ends
}

func (f *flakyStore) check(ctx context.Context) error {
	if f.hang {
		<-ctx.Done()
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, ctx.Err())
	}
	return f.fail
}

func (f *flakyStore) GetRoster(ctx context.Context, owner string) ([]storage.RosterItem, int64, error) {
	if err := f.check(ctx); err != nil {
		return nil, 0, err
	}
	return f.Store.GetRoster(ctx, owner)
}

func (f *flakyStore) UpdateRosterItem(ctx context.Context, owner, contact string, q storage.RosterQuota, fn storage.RosterUpdate) (storage.RosterItem, bool, bool, int64, error) {
	if err := f.check(ctx); err != nil {
		return storage.RosterItem{}, false, false, 0, err
	}
	return f.Store.UpdateRosterItem(ctx, owner, contact, q, fn)
}

func (f *flakyStore) StoreOffline(ctx context.Context, owner string, stanza []byte, q storage.OfflineQuota) error {
	if err := f.check(ctx); err != nil {
		return err
	}
	return f.Store.StoreOffline(ctx, owner, stanza, q)
}

func (f *flakyStore) Subscribers(ctx context.Context, owner string) ([]string, error) {
	if err := f.check(ctx); err != nil {
		return nil, err
	}
	return f.Store.Subscribers(ctx, owner)
}

func TestStorageFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		fail   error
		hang   bool
		stanza string
		cond   string
	}{
		{"roster get unavailable", storage.ErrUnavailable, false, `<iq type='get' id='e'><query xmlns='jabber:iq:roster'/></iq>`, "internal-server-error"},
		{"roster get timeout", nil, true, `<iq type='get' id='e'><query xmlns='jabber:iq:roster'/></iq>`, "resource-constraint"},
		{"roster set unavailable", storage.ErrUnavailable, false, `<iq type='set' id='e'><query xmlns='jabber:iq:roster'><item jid='x@y.net'/></query></iq>`, "internal-server-error"},
		{"roster set timeout", nil, true, `<iq type='set' id='e'><query xmlns='jabber:iq:roster'><item jid='x@y.net'/></query></iq>`, "resource-constraint"},
		{"offline store unavailable", storage.ErrUnavailable, false, `<message to='juliet@example.com' id='e'><body>x</body></message>`, "internal-server-error"},
		{"offline store timeout", nil, true, `<message to='juliet@example.com' id='e'><body>x</body></message>`, "resource-constraint"},
		{"subscribe unavailable", storage.ErrUnavailable, false, `<presence type='subscribe' to='juliet@example.com' id='e'/>`, "internal-server-error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := &flakyStore{Store: openStore(t)}
			// Retrying off: a message offline storage does not take is
			// bounced at once, as every one was before offlineretry.go
			// (TestOfflineRetry* test the retrying).
			e := newEnvWith(t, st, local.New("node1"), func(c *conf.Config) {
				c.Database.Timeout = 50 * time.Millisecond
				c.C2S.OfflineRetryMaxBytes = -1
			})
			e.user("juliet", "romeo")
			romeo := e.bind("romeo", "o")
			st.fail, st.hang = tc.fail, tc.hang
			e.send(romeo, tc.stanza)
			back := romeo.take()
			if len(back) != 1 || back[0].Type() != "error" || errCond(back[0]) != tc.cond || back[0].ID() != "e" {
				t.Fatalf("got %q, want one error %s", sigs(back), tc.cond)
			}
		})
	}
}

func TestStanzaErrorFor(t *testing.T) {
	cases := []struct {
		err  error
		want *wire.StanzaError
	}{
		{storage.ErrQuotaExceeded, wire.ErrServiceUnavailable},
		{fmt.Errorf("x: %w", storage.ErrUnavailable), wire.ErrInternalServerError},
		{fmt.Errorf("%w: %w", storage.ErrUnavailable, context.DeadlineExceeded), wire.ErrResourceConstraint},
		{fmt.Errorf("wrapped: %w", wire.ErrItemNotFound), wire.ErrItemNotFound},
		{fmt.Errorf("other"), wire.ErrInternalServerError},
	}
	for _, tc := range cases {
		t.Run(tc.err.Error(), func(t *testing.T) {
			if got := stanzaErrorFor(tc.err); got != tc.want {
				t.Fatalf("stanzaErrorFor(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestInterceptors(t *testing.T) {
	t.Parallel()
	type call struct {
		p       plugins.Point
		session string
		to      string
	}
	cases := []struct {
		name   string
		decide func(p plugins.Point, st *plugins.Stanza) (plugins.Verdict, error)
		remote bool   // the message arrives over s2s
		toGone bool   // the recipient is offline
		want   string // what juliet gets: "msg", "tagged", ""
		back   string // error condition romeo gets
		stored bool
	}{
		{"continue", func(plugins.Point, *plugins.Stanza) (plugins.Verdict, error) { return plugins.Continue, nil }, false, false, "msg", "", false},
		{"inbound drop", func(p plugins.Point, _ *plugins.Stanza) (plugins.Verdict, error) {
			if p == plugins.PointInbound {
				return plugins.Drop, nil
			}
			return plugins.Continue, nil
		}, false, false, "", "", false},
		{"inbound error bounces", func(p plugins.Point, _ *plugins.Stanza) (plugins.Verdict, error) {
			if p == plugins.PointInbound {
				return plugins.Drop, wire.ErrPolicyViolation
			}
			return plugins.Continue, nil
		}, false, false, "", "policy-violation", false},
		{"inbound rewrite", func(p plugins.Point, st *plugins.Stanza) (plugins.Verdict, error) {
			if p == plugins.PointInbound {
				st.El.Append(wire.NewNS("tag", "urn:test"))
			}
			return plugins.Continue, nil
		}, false, false, "tagged", "", false},
		{"deliver drop", func(p plugins.Point, _ *plugins.Stanza) (plugins.Verdict, error) {
			if p == plugins.PointDeliver {
				return plugins.Drop, nil
			}
			return plugins.Continue, nil
		}, false, false, "", "", false},
		{"offline handled", func(p plugins.Point, _ *plugins.Stanza) (plugins.Verdict, error) {
			if p == plugins.PointOffline {
				return plugins.Handled, nil
			}
			return plugins.Continue, nil
		}, false, true, "", "", false},
		{"offline continue", func(plugins.Point, *plugins.Stanza) (plugins.Verdict, error) { return plugins.Continue, nil }, false, true, "", "", true},
		{"remote inbound drop", func(p plugins.Point, _ *plugins.Stanza) (plugins.Verdict, error) {
			if p == plugins.PointRemoteInbound {
				return plugins.Drop, nil
			}
			return plugins.Continue, nil
		}, true, false, "", "", false},
		{"remote inbound continue", func(plugins.Point, *plugins.Stanza) (plugins.Verdict, error) { return plugins.Continue, nil }, true, false, "msg", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.user("juliet", "romeo")
			romeo := e.online("romeo", "o", 0)
			var juliet *fakeSession
			if !tc.toGone {
				juliet = e.online("juliet", "b", 0)
			}
			var calls []call
			pl := &fakePlugin{
				points: []plugins.Point{plugins.PointInbound, plugins.PointDeliver, plugins.PointOffline, plugins.PointRemoteInbound},
				intercept: func(p plugins.Point, st *plugins.Stanza) (plugins.Verdict, error) {
					if st.El.Name == "message" {
						calls = append(calls, call{p, st.Session, st.El.To()})
					}
					return tc.decide(p, st)
				},
			}
			e.r.SetPlugins(plugins.NewManager(nil, e.r.log, []plugins.Plugin{pl}))
			msg := `<message to='juliet@example.com' type='chat' id='i'><body>x</body></message>`
			if tc.remote {
				e.r.FromRemote(context.Background(), mustParse(t, `<message from='x@remote.net/r' to='juliet@example.com' type='chat' id='i'><body>x</body></message>`))
			} else {
				e.send(romeo, msg)
			}
			got := ""
			if juliet != nil {
				for _, el := range only("message", juliet.take()) {
					got = "msg"
					if el.Child("tag", "urn:test") != nil {
						got = "tagged"
					}
				}
			}
			if got != tc.want {
				t.Fatalf("juliet got %q, want %q (calls %v)", got, tc.want, calls)
			}
			back := romeo.take()
			if tc.back == "" && len(back) != 0 || tc.back != "" && (len(back) != 1 || errCond(back[0]) != tc.back) {
				t.Fatalf("romeo got %q, want %q", sigs(back), tc.back)
			}
			n, _ := e.store.CountOffline(context.Background(), "juliet@example.com")
			if (n == 1) != tc.stored {
				t.Fatalf("%d stored, want stored=%v", n, tc.stored)
			}
			// The session each point names.
			for _, c := range calls {
				switch c.p {
				case plugins.PointInbound:
					if c.session != "romeo@example.com/o" {
						t.Fatalf("inbound session %q", c.session)
					}
				case plugins.PointDeliver:
					if c.session == "" || wire.BareJID(c.session) != wire.BareJID(c.to) {
						t.Fatalf("deliver session %q for a stanza to %q", c.session, c.to)
					}
				case plugins.PointOffline, plugins.PointRemoteInbound:
					if c.session != "" {
						t.Fatalf("point %d session %q", c.p, c.session)
					}
				}
			}
		})
	}
}

// TestDeliverInterceptorIsolation: an interceptor changing the stanza for
// one recipient does not change what another recipient of the same
// message gets.
func TestDeliverInterceptorIsolation(t *testing.T) {
	e := newEnv(t)
	e.user("juliet", "romeo")
	romeo := e.online("romeo", "o", 0)
	a := e.online("juliet", "a", 1)
	b := e.online("juliet", "b", 1)
	a.take()
	pl := &fakePlugin{
		points: []plugins.Point{plugins.PointDeliver},
		intercept: func(p plugins.Point, st *plugins.Stanza) (plugins.Verdict, error) {
			if st.Session == "juliet@example.com/a" && st.El.Name == "message" {
				st.El.SetAttr("id", "changed")
				st.El.Append(wire.NewNS("tag", "urn:test"))
				*st.El = *st.El.Copy()
			}
			return plugins.Continue, nil
		},
	}
	e.r.SetPlugins(plugins.NewManager(nil, e.r.log, []plugins.Plugin{pl}))
	e.send(romeo, `<message to='juliet@example.com' type='chat' id='orig'><body>x</body></message>`)
	ga, gb := only("message", a.take()), only("message", b.take())
	if len(ga) != 1 || ga[0].ID() != "changed" || ga[0].Child("tag", "urn:test") == nil {
		t.Fatalf("a got %v", ga)
	}
	if len(gb) != 1 || gb[0].ID() != "orig" || gb[0].Child("tag", "urn:test") != nil {
		t.Fatalf("b got %v: a's change leaked", gb)
	}
}
