package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/wire"
)

func msgItem(s string) smItem { return smItem{data: []byte(s), msg: true} }

func itemsString(items []smItem) string {
	var parts []string
	for _, it := range items {
		parts = append(parts, string(it.data))
	}
	return strings.Join(parts, ",")
}

func TestSMWindow(t *testing.T) {
	type step struct {
		op      string // push, ack, restart, resumed
		arg     string
		h       uint32 // added to the case's start (mod 2^32)
		wantN   int    // ack: messages acknowledged
		wantErr bool   // ack, resumed
		want    string // restart, resumed: what comes back
		left    string // items left after the step
	}
	cases := []struct {
		name  string
		start uint32
		steps []step
	}{
		{"acks drop from the front and count messages only", 0, []step{
			{op: "push", arg: "<presence/>", left: "<presence/>"},
			{op: "push", arg: "m1", left: "<presence/>,m1"},
			{op: "push", arg: "m2", left: "<presence/>,m1,m2"},
			{op: "ack", h: 2, wantN: 1, left: "m2"},
			{op: "ack", h: 2, wantN: 0, left: "m2"},
			{op: "ack", h: 3, wantN: 1, left: ""},
		}},
		{"an ack beyond what was sent is refused and changes nothing", 0, []step{
			{op: "push", arg: "m1", left: "m1"},
			{op: "ack", h: 2, wantErr: true, left: "m1"},
			{op: "ack", h: 1, wantN: 1, left: ""},
		}},
		{"h wraps around 2^32", 1<<32 - 1, []step{
			{op: "push", arg: "m1", left: "m1"},
			{op: "push", arg: "m2", left: "m1,m2"},
			{op: "ack", h: 1, wantN: 1, left: "m2"}, // h = 0 after the wrap
			{op: "ack", h: 2, wantN: 1, left: ""},
		}},
		{"a new stream resends the unacknowledged messages, not the presence", 0, []step{
			{op: "push", arg: "<presence/>", left: "<presence/>"},
			{op: "push", arg: "m1", left: "<presence/>,m1"},
			{op: "push", arg: "m2", left: "<presence/>,m1,m2"},
			{op: "ack", h: 2, wantN: 1, left: "m2"},
			{op: "push", arg: "m3", left: "m2,m3"},
			{op: "restart", want: "m2,m3", left: ""},
			// counters start again from zero on the new stream
			{op: "push", arg: "<presence/>", left: "<presence/>"},
			{op: "ack", h: 1, wantN: 0, left: ""},
		}},
		{"a resumption resends what the server had not handled and keeps it", 0, []step{
			{op: "push", arg: "<presence/>", left: "<presence/>"},
			{op: "push", arg: "m1", left: "<presence/>,m1"},
			{op: "push", arg: "m2", left: "<presence/>,m1,m2"},
			{op: "resumed", h: 2, want: "m2", left: "m2"},
			{op: "ack", h: 3, wantN: 1, left: ""},
		}},
		{"a failed resumption's h acknowledges what the server had; only the rest is sent again", 7, []step{
			{op: "push", arg: "m1", left: "m1"},
			{op: "push", arg: "m2", left: "m1,m2"},
			{op: "push", arg: "m3", left: "m1,m2,m3"},
			{op: "ack", h: 2, wantN: 2, left: "m3"},
			{op: "restart", want: "m3", left: ""},
		}},
		{"a resumption acknowledging too much fails", 0, []step{
			{op: "push", arg: "m1", left: "m1"},
			{op: "resumed", h: 5, wantErr: true, left: "m1"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := smWindow{h: c.start}
			for i, s := range c.steps {
				switch s.op {
				case "push":
					if strings.HasPrefix(s.arg, "<") {
						w.push(smItem{data: []byte(s.arg)})
					} else {
						w.push(msgItem(s.arg))
					}
				case "ack":
					n, err := w.ack(c.start + s.h)
					if (err != nil) != s.wantErr || n != s.wantN {
						t.Fatalf("step %d: ack(%d) = %d, %v", i, s.h, n, err)
					}
				case "restart":
					if got := itemsString(w.restart()); got != s.want {
						t.Fatalf("step %d: restart = %q, want %q", i, got, s.want)
					}
					c.start = 0
				case "resumed":
					got, err := w.resumed(c.start + s.h)
					if (err != nil) != s.wantErr || itemsString(got) != s.want {
						t.Fatalf("step %d: resumed(%d) = %q, %v", i, s.h, itemsString(got), err)
					}
				}
				if got := itemsString(w.items); got != s.left {
					t.Fatalf("step %d (%s): left %q, want %q", i, s.op, got, s.left)
				}
			}
		})
	}
}

func TestSMWindowMessages(t *testing.T) {
	var w smWindow
	w.push(smItem{data: []byte("<presence/>")})
	w.push(msgItem("m1"))
	w.push(msgItem("m2"))
	if n := w.messages(); n != 2 {
		t.Fatalf("messages = %d, want 2", n)
	}
}

// A message resent after a reconnect that the receiver already had is a
// duplicate (redelivered), and one that arrives only through the resend is
// delivered: neither is lost.
func TestTrackerCountsResendsAsRedelivered(t *testing.T) {
	tr := NewTracker(2, 3, []int{1, 0})
	for seq := 1; seq <= 3; seq++ {
		tr.Sent(0, seq)
	}
	p := func(seq int) payload { return payload{Run: runID, Sender: 0, Seq: seq} }
	tr.Record(1, p(1), time.Millisecond)
	tr.Record(1, p(2), time.Millisecond)
	// the stream broke before the acknowledgement: 2 and 3 are resent
	if got := tr.Record(1, p(2), time.Millisecond); got != Duplicate {
		t.Fatalf("resent message 2 recorded as %v, want Duplicate", got)
	}
	if c := tr.Counts(); c.Lost != 1 || c.Received != 2 {
		t.Fatalf("before the resend of 3: %+v", c)
	}
	tr.Record(1, p(3), time.Millisecond)
	c := tr.Counts()
	if c.Sent != 3 || c.Received != 3 || c.Duplicates != 1 || c.Lost != 0 {
		t.Fatalf("counts = %+v, want sent 3, received 3, duplicates 1, lost 0", c)
	}
}

func TestNextServer(t *testing.T) {
	servers := []string{"a:1", "b:1", "c:1"}
	cases := []struct{ last, want string }{
		{"a:1", "b:1"}, {"c:1", "a:1"}, {"elsewhere:1", "a:1"}, {"", "a:1"},
	}
	for _, c := range cases {
		t.Run(c.last, func(t *testing.T) {
			if got := nextServer(servers, c.last); got != c.want {
				t.Fatalf("nextServer(%q) = %q, want %q", c.last, got, c.want)
			}
		})
	}
}

func TestAskDispatcher(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		body    string
		want    string
		wantErr error
	}{
		{"answer", 200, `{"node":"b","transport":"c2s","host":"127.0.0.1","port":25222,"load":0.1}`, "127.0.0.1:25222", nil},
		{"every node over its limit", 503, `{"error":"every node is over its limit; retry later","retry_after":30}`, "", errDispatchBusy},
		{"no node serves c2s", 404, `{"error":"no live node serves transport c2s"}`, "", nil},
		{"no host", 200, `{"node":"b"}`, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/dispatch" || r.URL.Query().Get("transport") != "c2s" {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(c.status)
				w.Write([]byte(c.body))
			}))
			defer srv.Close()
			got, err := askDispatcher(context.Background(), srv.URL+"/", time.Second, transportTCP)
			if c.want != "" {
				if err != nil || got != c.want {
					t.Fatalf("askDispatcher = %q, %v; want %q", got, err, c.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("askDispatcher = %q, want an error", got)
			}
			if c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
		})
	}
}

func TestAsStreamErr(t *testing.T) {
	cases := []struct {
		name, xml, cond, host string
	}{
		{"see-other-host", `<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>127.0.0.1:25222</see-other-host></stream:error>`, "see-other-host", "127.0.0.1:25222"},
		{"system-shutdown with text", `<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bye</text></stream:error>`, "system-shutdown", ""},
		{"not a stream error", `<message><error type='cancel'/></message>`, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			el, err := wire.Parse([]byte(c.xml), wire.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if c.name == "not a stream error" {
				el = el.Child("error", "")
			}
			se := asStreamErr(el)
			if c.cond == "" {
				if se != nil {
					t.Fatalf("asStreamErr = %+v, want nil", se)
				}
				return
			}
			if se == nil || se.Cond != c.cond || se.Host != c.host {
				t.Fatalf("asStreamErr = %+v, want %s %q", se, c.cond, c.host)
			}
		})
	}
}

func TestTrackerMissing(t *testing.T) {
	tr := NewTracker(2, 100, nil)
	for seq := 1; seq <= 70; seq++ {
		tr.Sent(0, seq)
		if seq != 3 && seq != 65 {
			tr.Record(1, payload{Run: runID, Sender: 0, Seq: seq}, 0)
		}
	}
	tr.Sent(1, 1)
	got := strings.Join(tr.Missing(10), " ")
	if got != "0:3 0:65 1:1" {
		t.Fatalf("Missing = %q, want 0:3 0:65 1:1", got)
	}
	if got := tr.Missing(1); len(got) != 1 {
		t.Fatalf("Missing(1) = %v", got)
	}
}
