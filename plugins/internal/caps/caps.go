// Package caps is XEP-0115 entity capabilities: the verification string
// of a disco#info answer, which clients put in presence and the server in
// its stream features.
package caps

import (
	"crypto/sha1"
	"encoding/base64"
	"sort"
	"strings"

	"github.com/aviary-im/aviary/wire"
)

// NS is the XEP-0115 namespace.
const NS = "http://jabber.org/protocol/caps"

const nsData = "jabber:x:data"

// Hash computes the XEP-0115 §5.1 verification string of a disco#info
// answer and returns its SHA-1 in base64, to compare with a 'ver'.
func Hash(info *wire.Element) string {
	type identity struct{ category, typ, lang, name string }
	var ids []identity
	var feats []string
	type form struct {
		formType string
		fields   []string // "var<v1<v2<" per field, sorted later
	}
	var forms []form
	for _, c := range info.Children {
		switch c.Name {
		case "identity":
			lang := c.Attr("xml:lang")
			if lang == "" {
				lang = c.Attr("http://www.w3.org/XML/1998/namespace:lang")
			}
			ids = append(ids, identity{c.Attr("category"), c.Attr("type"), lang, c.Attr("name")})
		case "feature":
			feats = append(feats, c.Attr("var"))
		case "x":
			if c.NS() != nsData {
				continue
			}
			var f form
			hasType := false
			for _, field := range c.ChildrenNamed("field", "") {
				var values []string
				for _, v := range field.ChildrenNamed("value", "") {
					values = append(values, v.AllText())
				}
				if field.Attr("var") == "FORM_TYPE" {
					if len(values) > 0 {
						f.formType = values[0]
					}
					hasType = true
					continue
				}
				sort.Strings(values)
				var b strings.Builder
				b.WriteString(field.Attr("var"))
				b.WriteByte('<')
				for _, v := range values {
					b.WriteString(v)
					b.WriteByte('<')
				}
				f.fields = append(f.fields, b.String())
			}
			if hasType {
				sort.Slice(f.fields, func(i, j int) bool { return varOf(f.fields[i]) < varOf(f.fields[j]) })
				forms = append(forms, f)
			}
		}
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := ids[i], ids[j]
		if a.category != b.category {
			return a.category < b.category
		}
		if a.typ != b.typ {
			return a.typ < b.typ
		}
		if a.lang != b.lang {
			return a.lang < b.lang
		}
		return a.name < b.name
	})
	sort.Strings(feats)
	sort.Slice(forms, func(i, j int) bool { return forms[i].formType < forms[j].formType })
	var s strings.Builder
	for _, id := range ids {
		s.WriteString(id.category + "/" + id.typ + "/" + id.lang + "/" + id.name + "<")
	}
	for _, f := range feats {
		s.WriteString(f + "<")
	}
	for _, f := range forms {
		s.WriteString(f.formType + "<")
		for _, field := range f.fields {
			s.WriteString(field)
		}
	}
	sum := sha1.Sum([]byte(s.String()))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func varOf(field string) string {
	v, _, _ := strings.Cut(field, "<")
	return v
}
