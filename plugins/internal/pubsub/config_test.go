package pubsub

import (
	"strings"
	"testing"

	"github.com/aviary-im/aviary/wire"
)

func form(t *testing.T, fields ...string) *wire.Element {
	t.Helper()
	var b strings.Builder
	b.WriteString(`<x xmlns='jabber:x:data' type='submit'>`)
	for i := 0; i+1 < len(fields); i += 2 {
		b.WriteString(`<field var='` + fields[i] + `'>`)
		for _, v := range strings.Split(fields[i+1], ",") {
			b.WriteString(`<value>` + v + `</value>`)
		}
		b.WriteString(`</field>`)
	}
	b.WriteString(`</x>`)
	el, err := wire.Parse([]byte(b.String()), wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return el
}

var base = Config{AccessModel: AccessPresence, PublishModel: PublishPublishers, MaxItems: 0, PersistItems: true,
	DeliverPayloads: true, DeliverNotifications: true, NotificationType: "headline",
	SendLastPublishedItem: SendLastNever, RosterGroups: []string{"b", "a"}}

// TestPreconditions: values are compared by meaning (booleans, max,
// groups as sets), unknown fields pass, a mismatch names the field.
func TestPreconditions(t *testing.T) {
	for _, c := range []struct {
		name   string
		fields []string
		err    string
	}{
		{"booleans written as 1", []string{"pubsub#persist_items", "1", "pubsub#deliver_payloads", "true"}, ""},
		{"max", []string{"pubsub#max_items", "max"}, ""},
		{"groups in another order", []string{"pubsub#roster_groups_allowed", "a,b"}, ""},
		{"an unknown field", []string{"pubsub#x-custom", "whatever"}, ""},
		{"another access model", []string{"pubsub#access_model", "open"}, "pubsub#access_model is presence, not open"},
		{"a number instead of max", []string{"pubsub#max_items", "5"}, "pubsub#max_items is max, not 5"},
		{"a bad value", []string{"pubsub#persist_items", "perhaps"}, "pubsub#persist_items: not a boolean: perhaps"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := base.Preconditions(form(t, c.fields...))
			if c.err == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			se, ok := err.(*wire.StanzaError)
			if !ok || se.Condition != "conflict" || se.Text != c.err || se.App == nil || se.App.Name != "precondition-not-met" || se.App.NS() != NSErrors {
				t.Errorf("got %#v, want conflict %q with precondition-not-met", err, c.err)
			}
		})
	}
}

// TestFormRoundTrip: a configuration stored as a submitted form reads
// back the same; Apply refuses bad values naming the field.
func TestFormRoundTrip(t *testing.T) {
	c := base
	c.Title, c.MaxItems, c.AccessModel = "Tunes", 7, AccessRoster
	var back Config
	if err := back.Apply(c.Form("submit", nil)); err != nil {
		t.Fatal(err)
	}
	if got, want := back.Form("submit", nil).String(), c.Form("submit", nil).String(); got != want {
		t.Errorf("round trip\ngot  %s\nwant %s", got, want)
	}
	for _, f := range [][]string{{"pubsub#access_model", "authorize"}, {"pubsub#max_items", "0"}, {"pubsub#notification_type", "chat"}} {
		err := back.Apply(form(t, f...))
		se, ok := err.(*wire.StanzaError)
		if !ok || se.Condition != "not-acceptable" || !strings.Contains(se.Text, f[0]) {
			t.Errorf("%v: got %v, want not-acceptable naming the field", f, err)
		}
	}
}
