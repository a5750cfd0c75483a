package mam

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// queryForm is the answer to a query IQ of type get: the fields a client
// may submit (XEP-0313 §4.1.1, with #extended's).
func queryForm() *wire.Element {
	x := wire.NewNS("x", NSData).SetAttr("type", "form")
	x.Append(wire.New("field", "type", "hidden", "var", "FORM_TYPE").Append(wire.New("value").SetText(NS)))
	for _, f := range []struct{ v, t string }{
		{"with", "jid-single"}, {"start", "text-single"}, {"end", "text-single"},
		{"before-id", "text-single"}, {"after-id", "text-single"}, {"ids", "text-multi"},
	} {
		x.Append(wire.New("field", "type", f.t, "var", f.v))
	}
	return wire.NewNS("query", NS).Append(x)
}

// request is a parsed query.
type request struct {
	q        storage.ArchiveQuery
	ids      []int64 // the ids field: these entries only
	max      int     // RSM max; -1 when absent
	flip     bool
	queryID  string
	checkIDs []int64 // after/before IDs that must exist
}

var (
	errUnknownID = wire.ErrItemNotFound.WithText("no message with that id in this archive")
	errBadTime   = wire.ErrBadRequest.WithText("start and end must be XEP-0082 date-times")
)

func parseRequest(q *wire.Element) (*request, error) {
	r := &request{max: -1, queryID: q.Attr("queryid")}
	r.flip = q.Child("flip-page", "") != nil
	if x := q.Child("x", NSData); x != nil {
		for _, f := range x.ChildrenNamed("field", "") {
			values := f.ChildrenNamed("value", "")
			val := ""
			if len(values) > 0 {
				val = values[0].Text
			}
			switch f.Attr("var") {
			case "FORM_TYPE":
				if val != NS {
					return nil, wire.ErrBadRequest.WithText("FORM_TYPE must be " + NS)
				}
			case "with":
				if val == "" {
					continue
				}
				w := wire.JIDOf(val).Bare()
				if w == "" {
					return nil, wire.ErrBadRequest.WithText("with is not a JID")
				}
				r.q.With = w
			case "start", "end":
				if val == "" {
					continue
				}
				t, err := time.Parse(time.RFC3339Nano, val)
				if err != nil {
					return nil, errBadTime
				}
				if f.Attr("var") == "start" {
					r.q.Start = t
				} else {
					r.q.End = t
				}
			case "after-id", "before-id":
				if val == "" {
					continue
				}
				id, err := storage.ParseArchiveID(val)
				if err != nil {
					return nil, errUnknownID
				}
				if f.Attr("var") == "after-id" {
					r.q.AfterID = max(r.q.AfterID, id)
				} else {
					r.q.BeforeID = id
				}
				r.checkIDs = append(r.checkIDs, id)
			case "ids":
				for _, v := range values {
					id, err := storage.ParseArchiveID(v.Text)
					if err != nil {
						return nil, errUnknownID
					}
					r.ids = append(r.ids, id)
				}
			default:
				return nil, wire.ErrFeatureNotImplemented.WithText("unsupported query field " + f.Attr("var"))
			}
		}
	}
	if set := q.Child("set", NSRSM); set != nil {
		if m := set.Child("max", ""); m != nil {
			n, err := strconv.Atoi(m.Text)
			if err != nil || n < 0 {
				return nil, wire.ErrBadRequest.WithText("RSM max must be a whole number")
			}
			r.max = n
		}
		if set.Child("index", "") != nil {
			return nil, wire.ErrFeatureNotImplemented.WithText("RSM index is not supported; page with after and before")
		}
		if a := set.Child("after", ""); a != nil && a.Text != "" {
			id, err := storage.ParseArchiveID(a.Text)
			if err != nil {
				return nil, errUnknownID
			}
			r.q.AfterID = max(r.q.AfterID, id)
			r.checkIDs = append(r.checkIDs, id)
		}
		if b := set.Child("before", ""); b != nil {
			r.q.Last = true // <before/>: the last page; <before>id</before>: the page before id
			if b.Text != "" {
				id, err := storage.ParseArchiveID(b.Text)
				if err != nil {
					return nil, errUnknownID
				}
				if r.q.BeforeID == 0 || id < r.q.BeforeID {
					r.q.BeforeID = id
				}
				r.checkIDs = append(r.checkIDs, id)
			}
		}
	}
	return r, nil
}

// queryAs runs a query and sends its results; it returns the <fin/> and
// the IDs it sent.
func (a *Archive) queryAs(ctx context.Context, owner, archiveJID string, iq *wire.Element) (*wire.Element, []int64, error) {
	r, err := parseRequest(iq.FirstChild())
	if err != nil {
		return nil, nil, err
	}
	// Read this node's own writes: what it queued for the account (the
	// messages the client just sent or got) is in the store first.
	if err := a.Flush(ctx); err != nil {
		return nil, nil, err
	}
	for _, id := range r.checkIDs {
		if _, err := a.store.Get(ctx, owner, id); errors.Is(err, storage.ErrNotFound) {
			return nil, nil, errUnknownID
		} else if err != nil {
			return nil, nil, err
		}
	}
	limit := a.maxPage
	if r.max >= 0 && r.max < limit {
		limit = r.max
	}
	var page storage.ArchivePage
	switch {
	case len(r.ids) > 0:
		page, err = a.byIDs(ctx, owner, r.ids, limit)
	case limit == 0:
		// <max>0</max>: only the count (XEP-0059 §2.7).
		r.q.Limit, r.q.Count = 1, true
		page, err = a.store.Query(ctx, owner, r.q)
		page.Entries, page.Complete = nil, false
	default:
		r.q.Limit = limit
		page, err = a.store.Query(ctx, owner, r.q)
	}
	if err != nil {
		return nil, nil, err
	}
	if page.Total < 0 && page.Complete && r.q.AfterID == 0 && r.q.BeforeID == 0 && len(r.ids) == 0 {
		// The whole match fits the page: the count is free.
		page.Total = len(page.Entries)
	}
	to := iq.From()
	sent := make([]int64, 0, len(page.Entries))
	order := page.Entries
	if r.flip {
		order = slices.Clone(order)
		slices.Reverse(order)
	}
	for _, e := range order {
		msg, err := parseStored(e.Value)
		if err != nil {
			a.host.Logger().Warn("mam: skipping an unreadable archived message", "owner", owner, "id", e.ID, "err", err)
			continue
		}
		a.host.Route(ctx, resultMessage(archiveJID, to, r.queryID, e, msg))
		sent = append(sent, e.ID)
	}
	return fin(page, r), sent, nil
}

// byIDs reads the entries of the ids field (#extended), oldest first.
func (a *Archive) byIDs(ctx context.Context, owner string, ids []int64, limit int) (storage.ArchivePage, error) {
	if len(ids) > limit {
		return storage.ArchivePage{}, wire.ErrPolicyViolation.WithText("more ids than one page holds (" + strconv.Itoa(limit) + ")")
	}
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	page := storage.ArchivePage{Total: len(ids), Complete: true}
	for _, id := range ids {
		e, err := a.store.Get(ctx, owner, id)
		if errors.Is(err, storage.ErrNotFound) {
			return page, errUnknownID
		}
		if err != nil {
			return page, err
		}
		page.Entries = append(page.Entries, e)
	}
	return page, nil
}

// resultMessage wraps an archived message for the querier (XEP-0313 §4.2).
func resultMessage(from, to, queryID string, e storage.ArchiveEntry, msg *wire.Element) *wire.Element {
	msg.SetAttr("xmlns", wire.NSClient)
	fwd := wire.NewNS("forwarded", wire.NSForward).Append(
		wire.NewNS("delay", wire.NSDelay).SetAttr("stamp", stamp(e.When)),
		msg)
	res := wire.NewNS("result", NS).SetAttr("id", storage.FormatArchiveID(e.ID)).Append(fwd)
	if queryID != "" {
		res.SetAttr("queryid", queryID)
	}
	out := wire.New("message", "from", from, "to", to, "id", randomID())
	// If the querier left meanwhile, the router must not keep this for
	// the account's next login.
	return out.Append(res, wire.NewNS("no-store", NSHints))
}

// fin is the IQ result's payload.
func fin(page storage.ArchivePage, r *request) *wire.Element {
	f := wire.NewNS("fin", NS)
	if page.Complete {
		f.SetAttr("complete", "true")
	}
	set := wire.NewNS("set", NSRSM)
	if n := len(page.Entries); n > 0 {
		set.Append(wire.New("first").SetText(storage.FormatArchiveID(page.Entries[0].ID)))
		set.Append(wire.New("last").SetText(storage.FormatArchiveID(page.Entries[n-1].ID)))
	}
	if page.Total >= 0 {
		set.Append(wire.New("count").SetText(strconv.Itoa(page.Total)))
	}
	return f.Append(set)
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "mam-" + hex.EncodeToString(b[:])
}
