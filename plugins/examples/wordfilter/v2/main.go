//go:build wasip1

// Command wordfilter (version 2) masks a word in message bodies that users
// send. It also drops messages that look like spam (version 1 did not).
package main

import (
	"strings"

	"github.com/aviary-im/aviary/plugins/sdk"
	"github.com/aviary-im/aviary/wire"
)

func init() {
	sdk.Handle(sdk.Inbound, func(point uint32, session string, st *wire.Element) uint32 {
		if st.Name != "message" {
			return sdk.Continue
		}
		body := st.Child("body", "")
		if body != nil && strings.Contains(strings.ToLower(body.Text), "buy cheap") {
			sdk.Log(sdk.LevelInfo, "dropped spam from "+session)
			return sdk.Drop
		}
		if body != nil && strings.Contains(strings.ToLower(body.Text), "darn") {
			body.Text = replaceFold(body.Text, "darn", "****")
		}
		return sdk.Continue
	})
}

func replaceFold(s, word, with string) string {
	var b strings.Builder
	lower := strings.ToLower(s)
	for {
		i := strings.Index(lower, word)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(with)
		s, lower = s[i+len(word):], lower[i+len(word):]
	}
}

func main() {}
