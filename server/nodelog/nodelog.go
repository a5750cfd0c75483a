// Package nodelog is the node's log handler: one text or JSON line per
// record, as log/slog writes them, with three additions.
//
//   - The level is a *slog.LevelVar the admin console changes while the
//     node runs (log_level is a live setting, see conf.Live).
//   - The newest records are kept in memory, bounded in number and bytes
//     (Ring), for the console's log viewer: an operator sees what a node
//     logged without a shell on its machine.
//   - In the text format a value that spans several lines (a WebAssembly
//     guest's stack trace in an error, a panic's report) is not escaped
//     into one long line of \n and \t: its first line stays in the record's
//     line, marked "(N more lines below)", and the rest follows, each line
//     indented by a tab, so a trace reads as a trace and every record still
//     starts a line with time=. JSON keeps each record on one line (log
//     shippers parse it) and escapes as it always did.
//
// RingOf and LevelOf find the ring and the level of a logger built here,
// so the parts that need them (the admin backend) take them from the
// node's logger instead of being handed them through every constructor.
package nodelog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// Handler is the node's slog.Handler (see the package doc).
type Handler struct {
	base  slog.Handler
	text  bool
	level *slog.LevelVar
	ring  *Ring
	out   *output
}

// output is what every Handler derived from one New shares: the
// destination, and the lock that keeps a record's line and the lines
// below it together.
type output struct {
	mu sync.Mutex
	w  io.Writer
	// cur is the record being written, for the tee; set under mu.
	cur     slog.Record
	trailer []byte
	ring    *Ring
}

// Write is what the base handler writes one record's line to (slog's
// handlers write each record in one call): it goes to w, then the ring.
func (o *output) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if o.ring != nil {
		o.ring.add(o.cur.Time, o.cur.Level, p, o.trailer)
	}
	return n, err
}

// New returns a handler writing to w in format ("json", else text) the
// records at or above level, keeping the newest in ring (nil: none).
func New(w io.Writer, format string, level *slog.LevelVar, ring *Ring) *Handler {
	out := &output{w: w, ring: ring}
	o := &slog.HandlerOptions{Level: level}
	h := &Handler{text: format != "json", level: level, ring: ring, out: out}
	if h.text {
		h.base = slog.NewTextHandler(out, o)
	} else {
		h.base = slog.NewJSONHandler(out, o)
	}
	return h
}

// Enabled reports whether level is logged.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.base.Enabled(ctx, l) }

// WithAttrs returns a handler adding attrs to every record.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.base = h.base.WithAttrs(attrs)
	return &c
}

// WithGroup returns a handler putting later attributes in a group.
func (h *Handler) WithGroup(name string) slog.Handler {
	c := *h
	c.base = h.base.WithGroup(name)
	return &c
}

// Handle writes the record's line, then, in the text format, the other
// lines of its multi-line values.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	var trailer []byte
	if h.text {
		r, trailer = splitLines(r)
	}
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.cur, h.out.trailer = r, trailer
	err := h.base.Handle(ctx, r)
	if len(trailer) > 0 {
		if _, werr := h.out.w.Write(trailer); err == nil {
			err = werr
		}
	}
	h.out.cur, h.out.trailer = slog.Record{}, nil
	return err
}

// splitLines keeps the first line of each multi-line string (or error)
// attribute and of the message in the record, and returns the other
// lines, indented, to be written below it.
func splitLines(r slog.Record) (slog.Record, []byte) {
	multi := strings.IndexByte(r.Message, '\n') >= 0
	r.Attrs(func(a slog.Attr) bool {
		if _, ok := multiLine(a.Value); ok {
			multi = true
			return false
		}
		return true
	})
	if !multi {
		return r, nil
	}
	var trailer bytes.Buffer
	msg := r.Message
	if first, rest, ok := strings.Cut(msg, "\n"); ok {
		msg = first + marker(rest)
		indent(&trailer, "msg", rest)
	}
	out := slog.NewRecord(r.Time, r.Level, msg, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if s, ok := multiLine(a.Value); ok {
			first, rest, _ := strings.Cut(s, "\n")
			a = slog.String(a.Key, first+marker(rest))
			indent(&trailer, a.Key, rest)
		}
		out.AddAttrs(a)
		return true
	})
	return out, trailer.Bytes()
}

// multiLine returns the text of a string or error value that spans lines.
func multiLine(v slog.Value) (string, bool) {
	var s string
	switch v.Kind() {
	case slog.KindString:
		s = v.String()
	case slog.KindAny:
		err, ok := v.Any().(error)
		if !ok || err == nil {
			return "", false
		}
		s = err.Error()
	default:
		return "", false
	}
	s = strings.TrimRight(s, "\n")
	return s, strings.IndexByte(s, '\n') >= 0
}

func marker(rest string) string {
	return fmt.Sprintf(" (%d more lines below)", strings.Count(rest, "\n")+1)
}

// indent writes rest's lines under a "key:" line, each after a tab.
func indent(b *bytes.Buffer, key, rest string) {
	b.WriteString("\t" + key + ":\n")
	for _, line := range strings.Split(rest, "\n") {
		b.WriteString("\t\t")
		b.WriteString(strings.TrimRight(line, "\r"))
		b.WriteByte('\n')
	}
}

// RingOf returns the ring of a handler New built (nil otherwise).
func RingOf(h slog.Handler) *Ring {
	if nh, ok := h.(*Handler); ok {
		return nh.ring
	}
	return nil
}

// LevelOf returns the level of a handler New built (nil otherwise).
func LevelOf(h slog.Handler) *slog.LevelVar {
	if nh, ok := h.(*Handler); ok {
		return nh.level
	}
	return nil
}
