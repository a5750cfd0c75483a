package bosh

import (
	"context"
	"testing"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// FuzzHandle feeds arbitrary request bodies to a manager with one live
// session: nothing may panic, and every answer is a <body/>.
func FuzzHandle(f *testing.F) {
	for _, seed := range []string{
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='example.com' wait='1' hold='1'/>`,
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='1001' sid='SID'><message xmlns='jabber:client'/></body>`,
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='1002' sid='SID' type='terminate'/>`,
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='1001' sid='SID' pause='5' ack='1000'/>`,
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='1001' sid='SID' xmlns:xmpp='urn:xmpp:xbosh' xmpp:restart='true'/>`,
		`<body rid='99999999999999999999'/>`,
		`<body xmlns='http://jabber.org/protocol/httpbind' sid='SID' rid='1001'>`,
		``,
	} {
		f.Add([]byte(seed))
	}
	fs := newFakeStream()
	opts := testOptions(fs)
	opts.MaxBodyBytes = 4096
	m := NewManager(opts)
	c, _ := connect(f, m, "wait='1' hold='1'")
	f.Fuzz(func(t *testing.T, raw []byte) {
		raw = []byte(replaceSID(string(raw), c.sid))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		resp := m.Handle(ctx, raw, Meta{})
		if resp == nil {
			return // held past the deadline
		}
		if el, err := wire.Parse(resp, wire.Limits{}); err != nil || el.Name != "body" {
			t.Fatalf("answer %q to %q", resp, raw)
		}
	})
}

func replaceSID(s, sid string) string {
	out := []byte{}
	for i := 0; i < len(s); {
		if i+3 <= len(s) && s[i:i+3] == "SID" {
			out = append(out, sid...)
			i += 3
			continue
		}
		out = append(out, s[i])
		i++
	}
	return string(out)
}
