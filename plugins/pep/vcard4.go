package pep

import (
	"context"
	"encoding/base64"
	"strings"

	"github.com/aviary-im/aviary/plugins/internal/pubsub"
	"github.com/aviary-im/aviary/plugins/vcard"
	"github.com/aviary-im/aviary/wire"
)

// vCard4 over PEP (XEP-0292): the node urn:xmpp:vcard4 holds the item
// "current", a <vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'/> (RFC
// 6351). It is kept in step with vcard-temp (XEP-0054), field by field
// for what both can say: the formatted and structured name, nickname,
// birthday, URLs, e-mail addresses, telephone numbers, XMPP addresses,
// organisation, title, role, note and postal addresses. A vcard-temp
// set is published as vCard4 (the PHOTO goes to the XEP-0084 avatar
// instead, avatar.go); a vCard4 publish rewrites those fields of the
// vcard-temp and keeps its others (PHOTO included), and a vCard4 photo
// given as a data: URI becomes the PHOTO and the avatar.

// Namespaces and nodes.
const (
	NSVCard4   = "urn:xmpp:vcard4"
	NSVCard4El = "urn:ietf:params:xml:ns:vcard-4.0"
)

const vcard4ItemID = "current"

// textMap pairs a vcard-temp element holding text with the vCard4
// property and value element holding the same.
var textMap = []struct{ temp, v4, value string }{
	{"FN", "fn", "text"},
	{"NICKNAME", "nickname", "text"},
	{"BDAY", "bday", "date"},
	{"URL", "url", "uri"},
	{"TITLE", "title", "text"},
	{"ROLE", "role", "text"},
	{"DESC", "note", "text"},
}

// part pairs a part of a structured vcard-temp property with the
// vCard4 one.
type part struct{ temp, v4 string }

// nameParts pairs the parts of vcard-temp N with those of vCard4 n.
var nameParts = []part{
	{"FAMILY", "surname"}, {"GIVEN", "given"}, {"MIDDLE", "additional"},
	{"PREFIX", "prefix"}, {"SUFFIX", "suffix"},
}

// adrParts pairs the parts of vcard-temp ADR with those of vCard4 adr.
var adrParts = []part{
	{"POBOX", "pobox"}, {"EXTADD", "ext"}, {"STREET", "street"},
	{"LOCALITY", "locality"}, {"REGION", "region"}, {"PCODE", "code"}, {"CTRY", "country"},
}

// mappedTemp are the vcard-temp elements the conversion owns: a vCard4
// publish replaces them and keeps the others.
var mappedTemp = []string{"FN", "N", "NICKNAME", "BDAY", "URL", "TITLE", "ROLE", "DESC", "EMAIL", "TEL", "JABBERID", "ORG", "ADR"}

func textEl(name, text string) *wire.Element { return wire.New(name).SetText(text) }

// structured converts a structured property (name, address) one way or
// the other: an element named name with a child per non-empty part;
// nil when every part is empty.
func structured(name string, src *wire.Element, parts []part, toV4 bool) *wire.Element {
	out := wire.New(name)
	for _, p := range parts {
		from, to := p.v4, p.temp
		if toV4 {
			from, to = p.temp, p.v4
		}
		if t := strings.TrimSpace(src.ChildText(from, "")); t != "" {
			out.Append(textEl(to, t))
		}
	}
	if len(out.Children) == 0 {
		return nil
	}
	return out
}

// toVCard4 converts a vcard-temp to vCard4.
func toVCard4(v *wire.Element) *wire.Element {
	out := wire.NewNS("vcard", NSVCard4El)
	for _, c := range v.Children {
		switch c.Name {
		case "N":
			out.Append(structured("n", c, nameParts, true))
		case "EMAIL":
			if t := strings.TrimSpace(c.ChildText("USERID", "")); t != "" {
				out.Append(wire.New("email").Append(textEl("text", t)))
			}
		case "TEL":
			if t := strings.TrimSpace(c.ChildText("NUMBER", "")); t != "" {
				out.Append(wire.New("tel").Append(textEl("uri", "tel:"+t)))
			}
		case "JABBERID":
			if t := strings.TrimSpace(c.AllText()); t != "" {
				out.Append(wire.New("impp").Append(textEl("uri", "xmpp:"+t)))
			}
		case "ORG":
			if t := strings.TrimSpace(c.ChildText("ORGNAME", "")); t != "" {
				out.Append(wire.New("org").Append(textEl("text", t)))
			}
		case "ADR":
			out.Append(structured("adr", c, adrParts, true))
		default:
			for _, m := range textMap {
				if c.Name == m.temp {
					if t := strings.TrimSpace(c.AllText()); t != "" {
						out.Append(wire.New(m.v4).Append(textEl(m.value, t)))
					}
				}
			}
		}
	}
	return out
}

// fromVCard4 returns v (a new vcard-temp when nil) with the mapped
// fields replaced by those of a vCard4, and the photo the vCard4 gives
// as a data: URI (nil when none).
func fromVCard4(v, v4 *wire.Element) (temp *wire.Element, photoType string, photo []byte) {
	if v == nil {
		temp = wire.NewNS("vCard", vcard.NS)
	} else {
		temp = v.Copy()
		temp.Tail = ""
	}
	for _, name := range mappedTemp {
		temp.RemoveChildren(name, "")
	}
	for _, c := range v4.Children {
		switch c.Name {
		case "n":
			temp.Append(structured("N", c, nameParts, false))
		case "email":
			if t := strings.TrimSpace(c.ChildText("text", "")); t != "" {
				temp.Append(wire.New("EMAIL").Append(wire.New("INTERNET"), textEl("USERID", t)))
			}
		case "tel":
			if t := strings.TrimSpace(c.ChildText("uri", "")); t != "" {
				temp.Append(wire.New("TEL").Append(wire.New("VOICE"), textEl("NUMBER", strings.TrimPrefix(t, "tel:"))))
			} else if t := strings.TrimSpace(c.ChildText("text", "")); t != "" {
				temp.Append(wire.New("TEL").Append(wire.New("VOICE"), textEl("NUMBER", t)))
			}
		case "impp":
			if t := strings.TrimSpace(c.ChildText("uri", "")); strings.HasPrefix(t, "xmpp:") {
				temp.Append(textEl("JABBERID", strings.TrimPrefix(t, "xmpp:")))
			}
		case "org":
			if t := strings.TrimSpace(c.ChildText("text", "")); t != "" {
				temp.Append(wire.New("ORG").Append(textEl("ORGNAME", t)))
			}
		case "adr":
			temp.Append(structured("ADR", c, adrParts, false))
		case "photo":
			photoType, photo = dataURI(c.ChildText("uri", ""))
		default:
			for _, m := range textMap {
				if c.Name == m.v4 {
					if t := strings.TrimSpace(c.ChildText(m.value, "")); t != "" {
						temp.Append(textEl(m.temp, t))
					}
				}
			}
		}
	}
	return temp, photoType, photo
}

// dataURI decodes "data:TYPE;base64,DATA"; nil for anything else.
func dataURI(uri string) (typ string, data []byte) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(uri), "data:")
	if !ok {
		return "", nil
	}
	meta, payload, ok := strings.Cut(rest, ",")
	if !ok {
		return "", nil
	}
	typ, enc, ok := strings.Cut(meta, ";")
	if !ok || enc != "base64" {
		return "", nil
	}
	b, err := base64.StdEncoding.DecodeString(stripSpace(payload))
	if err != nil || len(b) == 0 {
		return "", nil
	}
	return typ, b
}

// vcardToVCard4 publishes a vcard-temp a client stored as vCard4.
func (p *Plugin) vcardToVCard4(ctx context.Context, owner string, v *wire.Element) error {
	return p.publishIfChanged(ctx, owner, NSVCard4, vcard4ItemID, toVCard4(v), Defaults)
}

// vcard4ToVCard writes a vCard4 a client published into vcard-temp, and
// its photo, if any, into the avatar too.
func (p *Plugin) vcard4ToVCard(ctx context.Context, owner string, ch pubsub.Change) error {
	v4 := payloadOf(ch)
	if v4 == nil || v4.Name != "vcard" || v4.NS() != NSVCard4El {
		return nil
	}
	v, err := vcard.Load(ctx, p.host.Store(), owner)
	if err != nil {
		return err
	}
	temp, typ, photo := fromVCard4(v, v4)
	if photo != nil {
		temp = vcard.SetPhoto(temp, typ, photo)
	}
	if !sameXML(v, temp) {
		if err := vcard.Save(ctx, p.host.Store(), owner, temp); err != nil {
			return err
		}
	}
	if photo != nil {
		return p.photoToAvatar(ctx, owner, temp)
	}
	return nil
}
