package main

import (
	"slices"
	"testing"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// TestRoomTracker: in a room every occupant, the sender included, must
// get every message, so the tally is in deliveries (sender, seq,
// receiver): three occupants sending two messages each expect 18.
func TestRoomTracker(t *testing.T) {
	tr := NewRoomTracker(3, 2)
	for s := range 3 {
		tr.Sent(s, 1)
		tr.Sent(s, 2)
	}
	msg := func(sender, seq int) payload { return payload{Run: runID, Sender: sender, Seq: seq} }
	steps := []struct {
		name     string
		receiver int
		p        payload
		bounce   bool
		want     Outcome
	}{
		{"reflection to the sender", 0, msg(0, 1), false, Fresh},
		{"to another occupant", 1, msg(0, 1), false, Fresh},
		{"to the third", 2, msg(0, 1), false, Fresh},
		{"same message again", 1, msg(0, 1), false, Duplicate},
		{"next message", 1, msg(0, 2), false, Fresh},
		{"from another sender", 0, msg(2, 2), false, Fresh},
		{"sequence zero", 0, msg(1, 0), false, Unexpected},
		{"sequence too high", 0, msg(1, 3), false, Unexpected},
		{"unknown sender", 1, msg(7, 1), false, Unexpected},
		{"unknown receiver", 5, msg(1, 1), false, Unexpected},
		{"earlier run", 1, payload{Run: "0ld", Sender: 0, Seq: 1}, false, Stale},
		{"refused, back to its sender", 1, msg(1, 2), true, Bounced},
		{"refused twice", 1, msg(1, 2), true, Duplicate},
		{"refusal to another occupant", 0, msg(1, 1), true, Unexpected},
		{"one occupant got it before the refusal", 2, msg(1, 2), false, Fresh},
	}
	for _, s := range steps {
		var got Outcome
		if s.bounce {
			got = tr.Bounce(s.receiver, s.p)
		} else {
			got = tr.Record(s.receiver, s.p, time.Millisecond)
		}
		if got != s.want {
			t.Fatalf("%s: %v, want %v", s.name, got, s.want)
		}
	}
	// 6 messages × 3 occupants = 18 expected; 6 fresh; message 1:2 was
	// refused and reached one occupant, so 2 of its deliveries are bounced.
	want := Counts{Sent: 18, Received: 6, Lost: 10, Bounced: 2, Duplicates: 1, Unexpected: 5, Stale: 1}
	if c := tr.Counts(); c != want {
		t.Fatalf("Counts = %+v, want %+v", c, want)
	}
	if got := tr.Messages(); got != 6 {
		t.Fatalf("Messages = %d, want 6", got)
	}
	if got := len(tr.Latencies()); got != 6 {
		t.Fatalf("%d latencies, want 6 (fresh deliveries only)", got)
	}
	wantMissing := []string{"0:2>0", "0:2>2", "1:1>0", "1:1>1", "1:1>2", "2:1>0", "2:1>1", "2:1>2", "2:2>1", "2:2>2"}
	if got := tr.Missing(20); !slices.Equal(got, wantMissing) {
		t.Fatalf("Missing = %q, want %q", got, wantMissing)
	}
	if got := tr.Missing(3); !slices.Equal(got, wantMissing[:3]) {
		t.Fatalf("Missing(3) = %q, want %q", got, wantMissing[:3])
	}
	wantU := []string{"1:0>0", "1:3>0", "7:1>1", "1:1>5", "1:1>0"}
	if got := tr.UnexpectedSample(); !slices.Equal(got, wantU) {
		t.Fatalf("UnexpectedSample = %q, want %q", got, wantU)
	}
}

// TestRoomTrackerComplete: once every delivery happened nothing is lost,
// also past the 64 deliveries of one bitmap word, and waitDrained's
// condition holds.
func TestRoomTrackerComplete(t *testing.T) {
	const n, per = 9, 10 // 90 messages, 810 deliveries
	tr := NewRoomTracker(n, per)
	for s := range n {
		for seq := 1; seq <= per; seq++ {
			tr.Sent(s, seq)
			for r := range n {
				if tr.Record(r, payload{Run: runID, Sender: s, Seq: seq}, 0) != Fresh {
					t.Fatalf("%d:%d>%d not fresh", s, seq, r)
				}
			}
		}
	}
	c := tr.Counts()
	if c != (Counts{Sent: n * per * n, Received: n * per * n}) {
		t.Fatalf("Counts = %+v", c)
	}
	if m := tr.Missing(20); len(m) != 0 {
		t.Fatalf("Missing = %q", m)
	}
}

// TestJoinPresence: the join asks for no history, and only a presence
// with status 110 is the occupant's own.
func TestJoinPresence(t *testing.T) {
	el, err := wire.Parse([]byte(joinPresence("bench@conference.localhost", "bench7")), wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	x := el.Child("x", nsMUC)
	if el.Attr("to") != "bench@conference.localhost/bench7" || x == nil || x.Child("history", "") == nil || x.Child("history", "").Attr("maxstanzas") != "0" {
		t.Fatalf("join presence: %s", el.String())
	}
	cases := []struct {
		xml       string
		self, new bool
	}{
		{`<presence from='r@c/a'><x xmlns='` + nsMUCUser + `'><item role='participant'/><status code='110'/></x></presence>`, true, false},
		{`<presence from='r@c/a'><x xmlns='` + nsMUCUser + `'><status code='201'/><status code='110'/></x></presence>`, true, true},
		{`<presence from='r@c/b'><x xmlns='` + nsMUCUser + `'><item role='participant'/></x></presence>`, false, false},
		{`<presence from='r@c/b'><x xmlns='` + nsMUC + `'><status code='110'/></x></presence>`, false, false},
	}
	for _, c := range cases {
		el, err := wire.Parse([]byte(c.xml), wire.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if isSelfPresence(el) != c.self || hasStatus(el, 201) != c.new {
			t.Fatalf("%s: self %v, new room %v", c.xml, isSelfPresence(el), hasStatus(el, 201))
		}
	}
	e, _ := wire.Parse([]byte(`<presence type='error'><error type='cancel'><service-unavailable xmlns='`+nsStanzas+`'/><text xmlns='`+nsStanzas+`'>full</text></error></presence>`), wire.Limits{})
	if got := stanzaCondition(e); got != "service-unavailable" {
		t.Fatalf("stanzaCondition = %q", got)
	}
}
