package nodelog

import (
	"log/slog"
	"sync"
	"time"
)

// Bounds of a Ring: what the console's log viewer can show of one node.
// A record's text beyond EntryBytes is cut (the log file has it whole).
const (
	DefaultEntries = 2000
	DefaultBytes   = 2 << 20
	EntryBytes     = 8 << 10
)

// Entry is one logged record as it was written (its line, and in the text
// format the lines of its multi-line values below it).
type Entry struct {
	Time  time.Time
	Level slog.Level
	Text  string
	// Seq numbers the entries of one ring from 1, so a reader can ask for
	// what came after the last entry it saw.
	Seq uint64
}

// Ring keeps the newest entries, at most max of them and about maxBytes
// of text together; the oldest go first.
type Ring struct {
	mu       sync.Mutex
	entries  []Entry // a circular buffer of len max once full
	start    int     // index of the oldest
	n        int     // entries held
	bytes    int
	max      int
	maxBytes int
	seq      uint64
}

// NewRing returns a ring of at most max entries and maxBytes of text
// (zero: the defaults).
func NewRing(max, maxBytes int) *Ring {
	if max <= 0 {
		max = DefaultEntries
	}
	if maxBytes <= 0 {
		maxBytes = DefaultBytes
	}
	return &Ring{entries: make([]Entry, max), max: max, maxBytes: maxBytes}
}

func (r *Ring) add(t time.Time, l slog.Level, line, trailer []byte) {
	n := min(len(line)+len(trailer), EntryBytes)
	b := make([]byte, 0, n)
	b = append(b, line[:min(len(line), n)]...)
	b = append(b, trailer[:min(len(trailer), n-len(b))]...)
	text := string(b)
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.n > 0 && (r.n == r.max || r.bytes+len(text) > r.maxBytes) {
		r.bytes -= len(r.entries[r.start].Text)
		r.entries[r.start] = Entry{}
		r.start = (r.start + 1) % r.max
		r.n--
	}
	r.seq++
	r.entries[(r.start+r.n)%r.max] = Entry{Time: t, Level: l, Text: text, Seq: r.seq}
	r.n++
	r.bytes += len(text)
}

// Query selects entries.
type Query struct {
	// MinLevel keeps entries at or above it.
	MinLevel slog.Level
	// After keeps entries with a greater Seq (0: all).
	After uint64
	// Limit keeps the newest Limit of the matches (0: all).
	Limit int
}

// Entries returns the entries q selects, oldest first.
func (r *Ring) Entries(q Query) []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Entry
	for i := r.n - 1; i >= 0; i-- {
		e := r.entries[(r.start+i)%r.max]
		if e.Seq <= q.After {
			break
		}
		if e.Level < q.MinLevel {
			continue
		}
		out = append(out, e)
		if q.Limit > 0 && len(out) == q.Limit {
			break
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}
