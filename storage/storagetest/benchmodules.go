package storagetest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// ArchiveBenchSize is how many entries the ArchiveLast50 benchmark's owner
// has: $AVIARY_BENCH_ARCHIVE_N, default 100,000.
func ArchiveBenchSize() int {
	if n, err := strconv.Atoi(os.Getenv("AVIARY_BENCH_ARCHIVE_N")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// benchModules benchmarks the module stores' hot calls.
func benchModules(b *testing.B, open func(b *testing.B) storage.Store) {
	ctx := context.Background()
	const owner = "alice@example.com"
	vcard := []byte("<vCard xmlns='vcard-temp'><FN>Alice</FN><NICKNAME>al</NICKNAME></vCard>")
	b.Run("KVGet", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		kv := s.KeyValue("vcard")
		if _, err := kv.Set(ctx, owner, "", vcard, storage.Limits{}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := kv.Get(ctx, owner, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("KVSet", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		kv := s.KeyValue("vcard")
		b.ReportAllocs()
		for b.Loop() {
			if _, err := kv.Set(ctx, owner, "", vcard, storage.Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	// KVSetQuota is a private XML write under its quota: lock, count, write.
	b.Run("KVSetQuota", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		kv := s.KeyValue("private")
		lim := storage.Limits{Items: 1000, Bytes: 1 << 20}
		for i := range 20 {
			if _, err := kv.Set(ctx, owner, fmt.Sprint("k", i), vcard, lim); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := kv.Set(ctx, owner, "k0", vcard, lim); err != nil {
				b.Fatal(err)
			}
		}
	})
	// MapSetMax is a pubsub publish into a node keeping 10 items: lock,
	// count, write, evict the oldest.
	b.Run("MapSetMax", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		m := s.Map("pep")
		lim := storage.Limits{Items: 1000, Bytes: 10 << 20, Max: 10}
		n := 0
		b.ReportAllocs()
		for b.Loop() {
			n++
			if _, err := m.Set(ctx, owner, "urn:xmpp:microblog:0", strconv.Itoa(n), vcard, lim); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("MapListNewest10", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		m := s.Map("pep")
		for i := range 100 {
			if _, err := m.Set(ctx, owner, "node", strconv.Itoa(i), vcard, storage.Limits{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		for b.Loop() {
			if items, err := m.List(ctx, owner, "node", storage.MapQuery{Newest: true, Limit: 10}); err != nil || len(items) != 10 {
				b.Fatal(len(items), err)
			}
		}
	})
	msg := []byte("<message xmlns='jabber:client' from='bob@example.net/phone' to='alice@example.com' type='chat' id='m1'><body>Hello there, how are you today?</body></message>")
	b.Run("ArchiveAppend", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		a := s.Archive("mam")
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.Append(ctx, storage.ArchiveEntry{Owner: owner, With: "bob@example.net", Value: msg}); err != nil {
				b.Fatal(err)
			}
		}
	})
	// ArchiveAppendBatch100 appends 100 entries (50 messages, each for
	// both parties) per call: divide ns/op by 100 for the cost of one.
	b.Run("ArchiveAppendBatch100", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		a := s.Archive("mam")
		batch := make([]storage.ArchiveEntry, 100)
		for i := range batch {
			batch[i] = storage.ArchiveEntry{Owner: fmt.Sprintf("u%d@example.com", i/2), With: "bob@example.net", Value: msg}
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.AppendBatch(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
	})
	// ArchiveLast50 is a client catching up: the last 50 of an archive of
	// ArchiveBenchSize() entries (with 20 contacts), with the RSM count,
	// and the same filtered by one contact.
	b.Run("ArchiveLast50", func(b *testing.B) {
		s := open(b)
		defer s.Close()
		a := s.Archive("mam")
		n := ArchiveBenchSize()
		start := time.Now().Add(-time.Duration(n) * time.Second)
		batch := make([]storage.ArchiveEntry, 0, 1000)
		for i := range n {
			batch = append(batch, storage.ArchiveEntry{Owner: owner, With: fmt.Sprintf("c%d@example.net", i%20),
				When: start.Add(time.Duration(i) * time.Second), Value: msg})
			if len(batch) == cap(batch) || i == n-1 {
				if _, err := a.AppendBatch(ctx, batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		if v, ok := s.(interface{ Vacuum(context.Context) error }); ok {
			if err := v.Vacuum(ctx); err != nil {
				b.Fatal(err)
			}
		}
		if d, ok := s.(interface {
			ArchiveDiskBytes(context.Context) (int64, error)
		}); ok {
			size, err := d.ArchiveDiskBytes(ctx)
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("archive on disk: %d bytes for %d entries of %d-byte messages: %.0f bytes per entry",
				size, n, len(msg), float64(size)/float64(n))
		}
		b.Run(fmt.Sprintf("of%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var took []time.Duration
			for b.Loop() {
				t0 := time.Now()
				p, err := a.Query(ctx, owner, storage.ArchiveQuery{Last: true, Limit: 50})
				took = append(took, time.Since(t0))
				if err != nil || len(p.Entries) != 50 {
					b.Fatal(len(p.Entries), err)
				}
			}
			reportP99(b, took)
		})
		b.Run(fmt.Sprintf("of%d-count", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, err := a.Query(ctx, owner, storage.ArchiveQuery{Last: true, Limit: 50, Count: true})
				if err != nil || len(p.Entries) != 50 || p.Total != n {
					b.Fatal(len(p.Entries), p.Total, err)
				}
			}
		})
		b.Run(fmt.Sprintf("of%d-with", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, err := a.Query(ctx, owner, storage.ArchiveQuery{With: "c7@example.net", Last: true, Limit: 50})
				if err != nil || len(p.Entries) != 50 {
					b.Fatal(len(p.Entries), err)
				}
			}
		})
	})
}

// reportP99 reports the 99th percentile of the iterations' durations
// (the catch-up target is a p99, not a mean).
func reportP99(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[(len(took)*99)/100].Microseconds()), "p99-µs")
}
