package main

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// BroadcastStats adds the subscription set-up to the traffic figures.
type BroadcastStats struct {
	TrafficStats
	Followers  int     `json:"followers"`
	Subscribed int     `json:"subscribed"`
	SubSeconds float64 `json:"subscribe_seconds"`
}

// runBroadcast makes session 0 the hub: every other session subscribes to
// its presence, then the hub changes presence cfg.Messages times (at most
// cfg.InFlight changes not yet seen by every follower) and each follower
// records when each change reaches it. Messages per second counts
// deliveries (changes × followers).
func runBroadcast(ctx context.Context, cfg *Config, all []*conn) BroadcastStats {
	var live []*conn
	for _, c := range all {
		if c != nil {
			live = append(live, c)
		}
	}
	var st BroadcastStats
	if len(live) < 2 {
		st.ReadErrs = []string{"fewer than two sessions logged in"}
		return st
	}
	hub, followers := live[0], live[1:]
	hubBare := wire.BareJID(hub.jid)
	nf := len(followers)
	st.Followers = nf

	// One tracker slot per follower: the "sender" index of a payload is
	// rewritten to the receiving follower, so each follower expects
	// sequences 1..Messages exactly once.
	tr := NewTracker(nf, cfg.Messages, nil)
	subscribed := make([]atomic.Bool, nf)
	var nsub atomic.Int64
	// got[seq] counts followers that have seen change seq.
	got := make([]atomic.Int64, cfg.Messages+1)
	w := make(window, max(cfg.InFlight, 1))
	var target atomic.Int64 // followers that subscribed; set before sending
	target.Store(int64(nf))
	var lastRecv atomic.Int64
	done := make(chan struct{})
	var readErrs errorSet
	var rwg sync.WaitGroup

	rwg.Add(1)
	go func() { // the hub approves every subscription request
		defer rwg.Done()
		readLoop(hub, done, &readErrs, func(el *wire.Element) {
			if el.LocalName() == "presence" && el.Type() == "subscribe" {
				var b bytes.Buffer
				b.WriteString("<presence type='subscribed'")
				writeAttrs(&b, "to", wire.BareJID(el.From()))
				b.WriteString("/>")
				hub.Write(b.Bytes())
			}
		})
	}()
	for fi, c := range followers {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			readLoop(c, done, &readErrs, func(el *wire.Element) {
				if el.LocalName() != "presence" || wire.BareJID(el.From()) != hubBare {
					return
				}
				switch el.Type() {
				case "subscribed", "":
					if !subscribed[fi].Swap(true) {
						nsub.Add(1)
					}
				}
				if el.Type() != "" {
					return
				}
				p, err := parsePayload(el.ChildText("status", ""))
				if err != nil {
					return
				}
				t := now()
				p.Sender = fi
				if tr.Record(fi, p, t-p.Sent) == Fresh {
					lastRecv.Store(int64(t))
					if p.Seq < len(got) && got[p.Seq].Add(1) == target.Load() {
						w.release()
					}
				}
			})
		}()
	}

	// Subscribe every follower to the hub.
	subStart := time.Now()
	forEach(nf, cfg.Concurrency, func(fi int) {
		var b bytes.Buffer
		b.WriteString("<presence type='subscribe'")
		writeAttrs(&b, "to", hubBare)
		b.WriteString("/>")
		followers[fi].Write(b.Bytes())
	})
	deadline := time.Now().Add(cfg.SubscribeTimeout)
	for int(nsub.Load()) < nf && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	st.Subscribed = int(nsub.Load())
	target.Store(int64(st.Subscribed))
	st.SubSeconds = time.Since(subStart).Seconds()

	start := now()
	stalled := false
	for seq := 1; seq <= cfg.Messages && !stalled; seq++ {
		select {
		case w <- struct{}{}:
		case <-ctx.Done():
			stalled = true
			continue
		case <-time.After(cfg.Drain):
			stalled = true
			continue
		}
		for fi := range followers {
			if subscribed[fi].Load() {
				tr.Sent(fi, seq)
			}
		}
		p := payload{Run: runID, Sender: 0, Seq: seq, Sent: now()}
		if err := hub.writeString("<presence><status>" + p.String() + "</status><priority>" +
			strconv.Itoa(seq%100) + "</priority></presence>"); err != nil {
			readErrs.add(err)
			stalled = true
		}
	}
	waitDrained(ctx, tr, cfg.Drain)
	close(done)
	st.Counts = tr.Counts()
	if stalled {
		st.Stalled = 1
	}
	end := time.Duration(lastRecv.Load())
	if end > start {
		st.Seconds = (end - start).Seconds()
		st.PerSec = float64(st.Received) / st.Seconds
	}
	st.Latency = summarize(tr.Latencies())
	st.ReadErrs = readErrs.list()
	st.Receivers = nf
	return st
}
