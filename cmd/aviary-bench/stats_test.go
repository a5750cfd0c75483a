package main

import (
	"slices"
	"sync"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	thousand := make([]time.Duration, 1000)
	for i := range thousand {
		thousand[i] = time.Duration(i+1) * time.Millisecond
	}
	cases := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99.9, 7 * time.Millisecond},
		{"median of odd", ms(1, 2, 3), 50, 2 * time.Millisecond},
		{"median of even is lower", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p99.9 of 1..100 is the max", hundred, 99.9, 100 * time.Millisecond},
		{"p99.9 of 1..1000", thousand, 99.9, 999 * time.Millisecond},
		{"p100", hundred, 100, 100 * time.Millisecond},
		{"tiny p is the min", hundred, 0.001, 1 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := percentile(c.sorted, c.p); got != c.want {
				t.Fatalf("percentile(%v) = %v, want %v", c.p, got, c.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	sample := []time.Duration{4 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	l := summarize(sample)
	if l.Count != 4 || l.P50 != 2 || l.Max != 4 || l.Mean != 2.5 || l.P99 != 4 {
		t.Fatalf("summarize = %+v", l)
	}
	if (summarize(nil) != Latency{}) {
		t.Fatal("empty sample should summarise to zero")
	}
}

func TestPayload(t *testing.T) {
	p := payload{Run: runID, Sender: 12, Seq: 345, Sent: 6789 * time.Microsecond}
	got, err := parsePayload(" " + p.String() + "\n")
	if err != nil || got != p {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "hello", "ab:r:1:2", "ab:r:x:2:3", "ab:r:1:y:3", "ab:r:1:2:z", "ab:r:1:2:3:4", "ab::1:2:3"} {
		t.Run(bad, func(t *testing.T) {
			if _, err := parsePayload(bad); err == nil {
				t.Fatalf("parsePayload(%q) succeeded", bad)
			}
		})
	}
}

func TestTrackerRing(t *testing.T) {
	// Three senders in a ring, two messages each.
	n := 3
	expect := []int{ringNext(0, n), ringNext(1, n), ringNext(2, n)}
	if expect[2] != 0 {
		t.Fatalf("ring does not wrap: %v", expect)
	}
	tr := NewTracker(n, 2, expect)
	for s := 0; s < n; s++ {
		tr.Sent(s, 1)
		tr.Sent(s, 2)
	}
	tr.Resent(2, 1) // sender 2 wrote message 1 again on a new stream
	steps := []struct {
		name     string
		receiver int
		p        payload
		want     Outcome
	}{
		{"first", 1, payload{Run: runID, Sender: 0, Seq: 1}, Fresh},
		{"second", 1, payload{Run: runID, Sender: 0, Seq: 2}, Fresh},
		{"again", 1, payload{Run: runID, Sender: 0, Seq: 2}, Duplicate},
		{"wrap", 0, payload{Run: runID, Sender: 2, Seq: 1}, Fresh},
		{"resent, again", 0, payload{Run: runID, Sender: 2, Seq: 1}, Duplicate},
		{"wrong receiver", 2, payload{Run: runID, Sender: 0, Seq: 1}, Unexpected},
		{"seq zero", 2, payload{Run: runID, Sender: 1, Seq: 0}, Unexpected},
		{"seq too high", 2, payload{Run: runID, Sender: 1, Seq: 3}, Unexpected},
		{"unknown sender", 0, payload{Run: runID, Sender: 9, Seq: 1}, Unexpected},
		{"negative sender", 0, payload{Run: runID, Sender: -1, Seq: 1}, Unexpected},
		{"earlier run", 1, payload{Run: "0ld", Sender: 0, Seq: 1}, Stale},
	}
	for _, s := range steps {
		if got := tr.Record(s.receiver, s.p, time.Millisecond); got != s.want {
			t.Fatalf("%s: Record = %v, want %v", s.name, got, s.want)
		}
	}
	c := tr.Counts()
	// The duplicate of sender 2's resent message may be its own doing;
	// sender 0's message 2 was sent once and came twice: the server's.
	want := Counts{Sent: 6, Received: 3, Lost: 3, Duplicates: 2, ServerDuplicates: 1, Unexpected: 5, Stale: 1}
	if c != want {
		t.Fatalf("Counts = %+v, want %+v", c, want)
	}
	if got := len(tr.Latencies()); got != 3 {
		t.Fatalf("%d latencies, want 3 (fresh receipts only)", got)
	}
	wantS := []string{"0:1>2", "1:0>2", "1:3>2", "9:1>0", "-1:1>0"}
	if got := tr.UnexpectedSample(); !slices.Equal(got, wantS) {
		t.Fatalf("UnexpectedSample = %q, want %q", got, wantS)
	}
}

// TestTrackerBounce: a message that comes back to its sender as an error
// is bounced, neither lost nor unexpected (the old run counted 1,681
// bounces of a database outage as lost and unexpected); one that reaches
// anyone else is unexpected.
func TestTrackerBounce(t *testing.T) {
	tr := NewTracker(3, 3, []int{1, 2, 0})
	for s := range 3 {
		for seq := 1; seq <= 3; seq++ {
			tr.Sent(s, seq)
			tr.Acked(s, seq)
		}
	}
	steps := []struct {
		name     string
		receiver int
		p        payload
		bounce   bool
		want     Outcome
	}{
		{"delivered", 1, payload{Run: runID, Sender: 0, Seq: 1}, false, Fresh},
		{"bounced to its sender", 0, payload{Run: runID, Sender: 0, Seq: 2}, true, Bounced},
		{"bounced twice", 0, payload{Run: runID, Sender: 0, Seq: 2}, true, Duplicate},
		{"bounce to another", 2, payload{Run: runID, Sender: 0, Seq: 3}, true, Unexpected},
		{"bounce of an earlier run", 1, payload{Run: "0ld", Sender: 1, Seq: 1}, true, Stale},
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
	c := tr.Counts()
	want := Counts{Sent: 9, Received: 1, Bounced: 1, Lost: 7, AckedLost: 7, Unexpected: 1, Stale: 1}
	if c != want {
		t.Fatalf("Counts = %+v, want %+v", c, want)
	}
	for _, m := range tr.Missing(20) {
		if m == "0:2" {
			t.Fatalf("Missing lists the bounced message: %v", tr.Missing(20))
		}
	}
}

func TestTrackerManySequences(t *testing.T) {
	// More than 64 sequences per sender spans several bitmap words.
	tr := NewTracker(2, 200, nil)
	for seq := 1; seq <= 200; seq++ {
		tr.Sent(0, seq)
	}
	var wg sync.WaitGroup
	for seq := 1; seq <= 200; seq++ {
		if seq == 64 || seq == 65 || seq == 129 {
			continue // lost
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr.Record(1, payload{Run: runID, Sender: 0, Seq: seq}, 0)
		}()
	}
	wg.Wait()
	tr.Record(1, payload{Run: runID, Sender: 0, Seq: 200}, 0)
	c := tr.Counts()
	if c.Sent != 200 || c.Received != 197 || c.Lost != 3 || c.Duplicates != 1 {
		t.Fatalf("Counts = %+v", c)
	}
}

// TestUndisturbedLatencies: the latencies of messages whose sender and
// receiver both kept their streams are reported apart, whenever in the
// run the other clients were disturbed.
func TestUndisturbedLatencies(t *testing.T) {
	tr := NewTracker(3, 2, nil)
	for _, r := range []struct {
		from, to int
		lat      time.Duration
	}{{0, 1, 10 * time.Millisecond}, {1, 2, 20 * time.Millisecond}, {2, 0, 30 * time.Millisecond}, {0, 1, 40 * time.Millisecond}} {
		seq := 1
		if r.lat == 40*time.Millisecond {
			seq = 2
		}
		tr.Record(r.to, payload{Run: runID, Sender: r.from, Seq: seq}, r.lat)
	}
	tr.Disturbed(2) // after its messages: still out
	got := tr.UndisturbedLatencies()
	if !slices.Equal(got, []time.Duration{10 * time.Millisecond, 40 * time.Millisecond}) {
		t.Fatalf("undisturbed latencies %v, want those of 0→1 only", got)
	}
	if n := len(tr.Latencies()); n != 4 {
		t.Fatalf("%d latencies in all, want 4", n)
	}
}
