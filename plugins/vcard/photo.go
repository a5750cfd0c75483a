package vcard

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// NSUpdate is XEP-0153's presence namespace.
const NSUpdate = "vcard-temp:x:update"

// photoHashKey is the key/value key of the photo's hash, beside the
// vCard's "": the hex SHA-1 of the decoded PHOTO/BINVAL, "" when the
// vCard has no photo.
const photoHashKey = "photo-hash"

// Save stores a user's vCard and the hash of its photo. (Two writers at
// once may leave the hash of the other's vCard; the next write of either
// fixes it.)
func Save(ctx context.Context, st storage.Store, owner string, v *wire.Element) error {
	kv := st.KeyValue(Store)
	if _, err := kv.Set(ctx, owner, "", v.Bytes(), storage.Limits{}); err != nil {
		return err
	}
	_, err := kv.Set(ctx, owner, photoHashKey, []byte(PhotoHash(v)), storage.Limits{})
	return err
}

// Load returns a user's stored vCard; nil when there is none.
func Load(ctx context.Context, st storage.Store, owner string) (*wire.Element, error) {
	e, err := st.KeyValue(Store).Get(ctx, owner, "")
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return wire.Parse(e.Value, wire.Limits{MaxStanzaBytes: len(e.Value) + 1})
}

// Photo returns a vCard's embedded photo: its MIME type and bytes. ok is
// false when it has none, or only an EXTVAL link, or BINVAL is not
// base64.
func Photo(v *wire.Element) (typ string, data []byte, ok bool) {
	if v == nil {
		return "", nil, false
	}
	photo := v.Child("PHOTO", "")
	if photo == nil {
		return "", nil, false
	}
	bin := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, photo.ChildText("BINVAL", ""))
	if bin == "" {
		return "", nil, false
	}
	data, err := base64.StdEncoding.DecodeString(bin)
	if err != nil || len(data) == 0 {
		return "", nil, false
	}
	return strings.TrimSpace(photo.ChildText("TYPE", "")), data, true
}

// PhotoHash returns the XEP-0153 hash of a vCard's photo: the hex SHA-1
// of its bytes, "" when it has none.
func PhotoHash(v *wire.Element) string {
	_, data, ok := Photo(v)
	if !ok {
		return ""
	}
	sum := sha1.Sum(data)
	return hex.EncodeToString(sum[:])
}

// SetPhoto returns a copy of v (a new vCard when nil) whose PHOTO holds
// data of the given type, or has no PHOTO when data is nil.
func SetPhoto(v *wire.Element, typ string, data []byte) *wire.Element {
	if v == nil {
		v = wire.NewNS("vCard", NS)
	} else {
		v = v.Copy()
		v.Tail = ""
	}
	v.RemoveChildren("PHOTO", "")
	if data != nil {
		photo := wire.New("PHOTO")
		if typ != "" {
			photo.Append(wire.New("TYPE").SetText(typ))
		}
		photo.Append(wire.New("BINVAL").SetText(base64.StdEncoding.EncodeToString(data)))
		v.Append(photo)
	}
	return v
}

// storedPhotoHash returns the hash of a user's photo from the key/value
// store, computing it from the vCard the first time for a vCard stored
// before hashes were kept.
func storedPhotoHash(ctx context.Context, st storage.Store, owner string) (string, error) {
	kv := st.KeyValue(Store)
	e, err := kv.Get(ctx, owner, photoHashKey)
	if err == nil {
		return string(e.Value), nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return "", err
	}
	v, err := Load(ctx, st, owner)
	if err != nil {
		return "", err
	}
	hash := PhotoHash(v)
	if _, err := kv.CompareAndSet(ctx, owner, photoHashKey, 0, []byte(hash), storage.Limits{}); err != nil && !errors.Is(err, storage.ErrConflict) {
		return "", err
	}
	return hash, nil
}

func (p *Plugin) InterceptPoints() []plugins.Point { return points }

// points is shared: the manager asks for it on every stanza.
var points = []plugins.Point{plugins.PointInbound}

// Intercept adds the photo's hash to the available presence a local
// session sends (XEP-0398 §4). The router's copies of a broadcast, which
// also pass here, carry the <photo/> the first pass added and are left
// alone, so the store is read once per presence the client sends.
func (p *Plugin) Intercept(ctx context.Context, pt plugins.Point, st *plugins.Stanza) (plugins.Verdict, error) {
	el := st.El
	if el.Name != "presence" || el.Type() != "" || st.Session == "" {
		return plugins.Continue, nil
	}
	x := el.Child("x", NSUpdate)
	if x != nil && x.Child("photo", "") != nil {
		return plugins.Continue, nil
	}
	owner := wire.BareJID(st.Session)
	hash, err := storedPhotoHash(ctx, p.host.Store(), owner)
	if err != nil {
		p.host.Logger().Warn("vcard: reading the photo hash for presence", "owner", owner, "err", err)
		return plugins.Continue, nil
	}
	// A new children slice: a router copy shares its children with the
	// other copies and must not be written into.
	kids := make([]*wire.Element, 0, len(el.Children)+1)
	for _, c := range el.Children {
		if c != x {
			kids = append(kids, c)
		}
	}
	el.Children = append(kids, wire.NewNS("x", NSUpdate).Append(wire.New("photo").SetText(hash)))
	return plugins.Continue, nil
}
