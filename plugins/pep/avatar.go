package pep

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"image"
	_ "image/gif" // avatar sizes: DecodeConfig knows GIF, JPEG and PNG
	_ "image/jpeg"
	_ "image/png"
	"strconv"
	"strings"

	"github.com/aviary-im/aviary/plugins/internal/pubsub"
	"github.com/aviary-im/aviary/plugins/vcard"
	"github.com/aviary-im/aviary/wire"
)

// Avatars (XEP-0398): the XEP-0084 avatar (the nodes
// urn:xmpp:avatar:data and urn:xmpp:avatar:metadata, the item ID being
// the image's SHA-1) and the vcard-temp PHOTO (XEP-0153) hold the same
// image.
//
//   - A client publishes metadata: the image of its first <info/> without
//     a url, fetched from the data node and checked against its SHA-1,
//     becomes the vCard's PHOTO (with the info's type); empty metadata
//     (avatar disabled), a retraction, a purge or the node's deletion
//     removes the PHOTO.
//   - A client stores a vCard: a PHOTO unlike the current avatar is
//     published as data, then as metadata (type from the vCard, size
//     from the image when it is GIF, JPEG or PNG); a vCard without PHOTO
//     disables a current avatar with empty metadata.
//
// The vCard plugin then puts the new hash in the user's presence.

// Namespaces and nodes.
const (
	NSAvatarData     = "urn:xmpp:avatar:data"
	NSAvatarMetadata = "urn:xmpp:avatar:metadata"
)

// avatarToVCard writes the avatar a client published into the vCard.
func (p *Plugin) avatarToVCard(ctx context.Context, owner string, ch pubsub.Change) error {
	var typ string
	var data []byte
	if md := payloadOf(ch); md != nil {
		if md.Name != "metadata" || md.NS() != NSAvatarMetadata {
			return nil
		}
		info := firstStoredInfo(md)
		if info != nil {
			id := info.Attr("id")
			it, err := p.engine.Item(ctx, owner, NSAvatarData, id)
			if err != nil {
				return err
			}
			if it == nil || it.Payload == nil {
				return fmt.Errorf("avatar %s: metadata published before its data", id)
			}
			data, err = base64.StdEncoding.DecodeString(stripSpace(it.Payload.AllText()))
			if err != nil {
				return fmt.Errorf("avatar %s: data is not base64: %w", id, err)
			}
			if sha1Hex(data) != id {
				return fmt.Errorf("avatar %s: the data's SHA-1 is %s", id, sha1Hex(data))
			}
			typ = info.Attr("type")
		}
	} else if ch.Kind == pubsub.Published {
		return nil
	}
	v, err := vcard.Load(ctx, p.host.Store(), owner)
	if err != nil {
		return err
	}
	if data == nil && vcard.PhotoHash(v) == "" {
		return nil
	}
	if data != nil && vcard.PhotoHash(v) == sha1Hex(data) {
		return nil
	}
	return vcard.Save(ctx, p.host.Store(), owner, vcard.SetPhoto(v, typ, data))
}

// firstStoredInfo returns the first <info/> of avatar metadata that
// points into the data node (no url: XEP-0398 §3.1).
func firstStoredInfo(md *wire.Element) *wire.Element {
	for _, info := range md.ChildrenNamed("info", "") {
		if info.Attr("url") == "" && info.Attr("id") != "" {
			return info
		}
	}
	return nil
}

// vcardToPEP converts a vCard a client stored: its PHOTO to the avatar,
// the rest to vCard4.
func (p *Plugin) vcardToPEP(ctx context.Context, owner string, v *wire.Element) error {
	if err := p.photoToAvatar(ctx, owner, v); err != nil {
		return err
	}
	return p.vcardToVCard4(ctx, owner, v)
}

// photoToAvatar publishes a vCard's PHOTO as the XEP-0084 avatar, or
// disables the avatar when the vCard has none.
func (p *Plugin) photoToAvatar(ctx context.Context, owner string, v *wire.Element) error {
	cur, err := p.currentAvatar(ctx, owner)
	if err != nil {
		return err
	}
	typ, data, ok := vcard.Photo(v)
	if !ok {
		if cur == "" {
			return nil
		}
		_, err := p.engine.Publish(ctx, owner, NSAvatarMetadata, owner, "", wire.NewNS("metadata", NSAvatarMetadata), Defaults)
		return err
	}
	id := sha1Hex(data)
	if id == cur {
		return nil
	}
	if typ == "" {
		typ = "image/png"
	}
	payload := wire.NewNS("data", NSAvatarData).SetText(base64.StdEncoding.EncodeToString(data))
	if _, err := p.engine.Publish(ctx, owner, NSAvatarData, owner, id, payload, Defaults); err != nil {
		return err
	}
	info := wire.New("info", "bytes", strconv.Itoa(len(data)), "id", id, "type", typ)
	if c, _, err := image.DecodeConfig(bytes.NewReader(data)); err == nil {
		info.SetAttr("width", strconv.Itoa(c.Width))
		info.SetAttr("height", strconv.Itoa(c.Height))
	}
	_, err = p.engine.Publish(ctx, owner, NSAvatarMetadata, owner, id, wire.NewNS("metadata", NSAvatarMetadata).Append(info), Defaults)
	return err
}

// currentAvatar returns the ID of the avatar the metadata node points
// at, "" when there is none.
func (p *Plugin) currentAvatar(ctx context.Context, owner string) (string, error) {
	items, err := p.engine.Items(ctx, owner, NSAvatarMetadata)
	if err != nil || len(items) == 0 {
		if isNoNode(err) {
			err = nil
		}
		return "", err
	}
	md := items[len(items)-1].Payload
	if md == nil {
		return "", nil
	}
	if info := firstStoredInfo(md); info != nil {
		return info.Attr("id"), nil
	}
	return "", nil
}

func sha1Hex(b []byte) string {
	sum := sha1.Sum(b)
	return hex.EncodeToString(sum[:])
}

func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
}
