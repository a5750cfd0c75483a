package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// percentile returns the nearest-rank percentile p (0 < p <= 100) of sorted
// durations, or 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// The epsilon keeps float error (99.9/100*1000 = 999.0000000000001)
	// from pushing the rank up by one.
	rank := int(math.Ceil(p/100*float64(len(sorted)) - 1e-9))
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

// Latency summarises a latency sample in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// summarize sorts the sample in place and summarises it.
func summarize(sample []time.Duration) Latency {
	if len(sample) == 0 {
		return Latency{}
	}
	slices.Sort(sample)
	var sum time.Duration
	for _, d := range sample {
		sum += d
	}
	return Latency{
		Count: len(sample),
		P50:   ms(percentile(sample, 50)),
		P99:   ms(percentile(sample, 99)),
		P999:  ms(percentile(sample, 99.9)),
		Max:   ms(sample[len(sample)-1]),
		Mean:  ms(sum / time.Duration(len(sample))),
	}
}

// payload is what each benchmark message carries in its body: the run it
// belongs to, the sender's index, a sequence number from 1, and the send
// time as nanoseconds since the tool's clock origin (monotonic, so latency
// never goes negative). The run ID tells this run's messages from ones a
// server kept offline during an earlier run and delivers at login.
type payload struct {
	Run    string
	Sender int
	Seq    int
	Sent   time.Duration
}

const payloadPrefix = "ab:"

// runID names this process's run in every payload.
var runID = newRunID()

func newRunID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (p payload) String() string {
	return payloadPrefix + p.Run + ":" + strconv.Itoa(p.Sender) + ":" + strconv.Itoa(p.Seq) + ":" + strconv.FormatInt(int64(p.Sent), 10)
}

// parsePayload reads a body written by payload.String.
func parsePayload(s string) (payload, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, payloadPrefix) {
		return payload{}, fmt.Errorf("not a benchmark payload: %q", s)
	}
	parts := strings.Split(s[len(payloadPrefix):], ":")
	if len(parts) != 4 || parts[0] == "" {
		return payload{}, fmt.Errorf("bad benchmark payload: %q", s)
	}
	p := payload{Run: parts[0]}
	var err error
	if p.Sender, err = strconv.Atoi(parts[1]); err != nil {
		return payload{}, fmt.Errorf("bad sender in %q", s)
	}
	if p.Seq, err = strconv.Atoi(parts[2]); err != nil {
		return payload{}, fmt.Errorf("bad sequence in %q", s)
	}
	n, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil {
		return payload{}, fmt.Errorf("bad timestamp in %q", s)
	}
	p.Sent = time.Duration(n)
	return p, nil
}

// Outcome of recording one received payload.
type Outcome int

// Outcomes of Tracker.Record.
const (
	Fresh      Outcome = iota // first receipt of this (sender, seq)
	Duplicate                 // seen before
	Unexpected                // unknown sender, sequence out of range, or wrong receiver
	Stale                     // from another run (kept offline by the server)
	Bounced                   // came back to its sender as an error (the first time)
)

// Tracker keeps the ring's bookkeeping: which (sender, seq) pairs were sent
// and received, so that lost = sent - unique received and duplicates are
// counted apart. Safe for concurrent use.
type Tracker struct {
	mu       sync.Mutex
	perSend  int
	seen     [][]uint64 // bitmap per sender
	bounced  [][]uint64 // bitmap per sender: came back as an error
	acked    [][]uint64 // bitmap per sender: the server acknowledged it (XEP-0198)
	resent   [][]uint64 // bitmap per sender: sent again on a new stream
	anyAcked bool
	sent     []int // highest sequence sent per sender
	expectTo []int // receiver each sender writes to, -1 for any
	run      string
	fresh    int
	stale    int
	dups     int
	srvDups  int // duplicates of messages their sender sent once
	unexp    int
	unexpS   []string // a sample: sender:seq>receiver
	bounces  int
	lat      []time.Duration
	// pairLat is each fresh receipt's latency with its sender and
	// receiver, and disturbed the ring indexes whose stream was lost or
	// redirected during the run: UndisturbedLatencies.
	pairLat   []pairLatency
	disturbed map[int]bool
}

type pairLatency struct {
	sender, receiver int
	lat              time.Duration
}

// NewTracker tracks senders sending up to perSender messages each in this
// process's run. expectTo maps a sender to its receiver (nil: any receiver
// is fine).
func NewTracker(senders, perSender int, expectTo []int) *Tracker {
	t := &Tracker{run: runID, perSend: perSender, seen: make([][]uint64, senders), bounced: make([][]uint64, senders),
		acked: make([][]uint64, senders), resent: make([][]uint64, senders), sent: make([]int, senders), expectTo: expectTo}
	words := (perSender + 63) / 64
	for i := range t.seen {
		t.seen[i] = make([]uint64, words)
		t.bounced[i] = make([]uint64, words)
		t.acked[i] = make([]uint64, words)
		t.resent[i] = make([]uint64, words)
	}
	t.lat = make([]time.Duration, 0, senders*perSender)
	return t
}

// Sent records that sender sent sequence seq.
func (t *Tracker) Sent(sender, seq int) {
	t.mu.Lock()
	if seq > t.sent[sender] {
		t.sent[sender] = seq
	}
	t.mu.Unlock()
}

// Acked records that the server acknowledged sender's message seq (stream
// management): from then on it is the server's to deliver.
func (t *Tracker) Acked(sender, seq int) {
	if sender < 0 || sender >= len(t.acked) || seq < 1 || seq > t.perSend {
		return
	}
	t.mu.Lock()
	t.acked[sender][(seq-1)/64] |= uint64(1) << ((seq - 1) % 64)
	t.anyAcked = true
	t.mu.Unlock()
}

// Resent records that sender sent message seq again (on a new stream,
// -reconnect): a duplicate of it may be the sender's doing.
func (t *Tracker) Resent(sender, seq int) {
	if sender < 0 || sender >= len(t.resent) || seq < 1 || seq > t.perSend {
		return
	}
	t.mu.Lock()
	t.resent[sender][(seq-1)/64] |= uint64(1) << ((seq - 1) % 64)
	t.mu.Unlock()
}

// Record notes a receipt by receiver with the given latency.
func (t *Tracker) Record(receiver int, p payload, latency time.Duration) Outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.Run != t.run {
		t.stale++
		return Stale
	}
	if p.Sender < 0 || p.Sender >= len(t.seen) || p.Seq < 1 || p.Seq > t.perSend ||
		(t.expectTo != nil && t.expectTo[p.Sender] != receiver) {
		t.unexp++
		if len(t.unexpS) < 20 {
			t.unexpS = append(t.unexpS, strconv.Itoa(p.Sender)+":"+strconv.Itoa(p.Seq)+">"+strconv.Itoa(receiver))
		}
		return Unexpected
	}
	w, bit := (p.Seq-1)/64, uint64(1)<<((p.Seq-1)%64)
	if t.seen[p.Sender][w]&bit != 0 {
		t.dups++
		if t.resent[p.Sender][w]&bit == 0 {
			t.srvDups++
		}
		return Duplicate
	}
	t.seen[p.Sender][w] |= bit
	t.fresh++
	t.lat = append(t.lat, latency)
	t.pairLat = append(t.pairLat, pairLatency{p.Sender, receiver, latency})
	return Fresh
}

// Disturbed notes that client i of the ring lost its stream (or was sent
// elsewhere) during the run.
func (t *Tracker) Disturbed(i int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.disturbed == nil {
		t.disturbed = map[int]bool{}
	}
	t.disturbed[i] = true
}

// UndisturbedLatencies returns the latencies of messages between clients
// that kept their streams the whole run: what a storm does to the
// sessions it did not break (issue 23).
func (t *Tracker) UndisturbedLatencies() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []time.Duration
	for _, pl := range t.pairLat {
		if !t.disturbed[pl.sender] && !t.disturbed[pl.receiver] {
			out = append(out, pl.lat)
		}
	}
	return out
}

// Bounce notes a message of the ring that came back to receiver as an
// error (<message type='error'/>: the server could neither deliver nor
// store it). A bounce is an outcome the sender learns of, so it is not
// counted lost; one that reaches another session than its sender's is
// Unexpected.
func (t *Tracker) Bounce(receiver int, p payload) Outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.Run != t.run {
		t.stale++
		return Stale
	}
	if p.Sender != receiver || p.Sender >= len(t.seen) || p.Seq < 1 || p.Seq > t.perSend {
		t.unexp++
		return Unexpected
	}
	w, bit := (p.Seq-1)/64, uint64(1)<<((p.Seq-1)%64)
	if t.bounced[p.Sender][w]&bit != 0 {
		return Duplicate
	}
	t.bounced[p.Sender][w] |= bit
	t.bounces++
	return Bounced
}

// Counts is the tracker's tally.
type Counts struct {
	Sent       int `json:"sent"`
	Received   int `json:"received"`
	Lost       int `json:"lost"`
	Duplicates int `json:"duplicates"`
	// ServerDuplicates are the duplicates of messages their sender sent
	// only once: the server delivered them twice (a crashed node's kept
	// copies routed again to a client that had them). The others may be
	// the sender's resends of what it saw unacknowledged.
	ServerDuplicates int `json:"server_duplicates"`
	Unexpected       int `json:"unexpected"`
	Stale            int `json:"stale"` // from an earlier run, delivered from offline storage
	// Bounced counts messages that came back to their sender as an error
	// and never reached the receiver: not lost (the sender was told), but
	// not delivered either.
	Bounced int `json:"bounced"`
	// AckedLost counts the lost messages the server had acknowledged
	// (only with stream management, -reconnect).
	AckedLost int `json:"acked_lost,omitempty"`
}

// Counts returns the tally so far.
func (t *Tracker) Counts() Counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := Counts{Received: t.fresh, Duplicates: t.dups, ServerDuplicates: t.srvDups, Unexpected: t.unexp, Stale: t.stale}
	for sender, s := range t.sent {
		c.Sent += s
		for seq := 1; seq <= s; seq++ {
			w, bit := (seq-1)/64, uint64(1)<<((seq-1)%64)
			if t.seen[sender][w]&bit != 0 {
				continue
			}
			if t.bounced[sender][w]&bit != 0 {
				c.Bounced++
			} else if t.anyAcked && t.acked[sender][w]&bit != 0 {
				c.AckedLost++
			}
		}
	}
	c.Lost = c.Sent - c.Received - c.Bounced
	return c
}

// UnexpectedSample returns up to 20 unexpected receipts as
// "sender:seq>receiver".
func (t *Tracker) UnexpectedSample() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.unexpS)
}

// Latencies returns a copy of the recorded latencies.
func (t *Tracker) Latencies() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.lat)
}

// Missing returns up to k messages sent but never received, as
// "sender:seq" (sender indexes in the ring), for the report: those the
// server acknowledged first.
func (t *Tracker) Missing(k int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, wantAcked := range []bool{true, false} {
		for sender, top := range t.sent {
			for seq := 1; seq <= top && len(out) < k; seq++ {
				w, bit := (seq-1)/64, uint64(1)<<((seq-1)%64)
				if t.seen[sender][w]&bit == 0 && t.bounced[sender][w]&bit == 0 && (t.acked[sender][w]&bit != 0) == wantAcked {
					out = append(out, strconv.Itoa(sender)+":"+strconv.Itoa(seq))
				}
			}
		}
	}
	return out
}
