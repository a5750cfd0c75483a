//go:build wasip1

// A plugin that tries to make the host copy more than its per-stanza
// bounds allow, the way the body of a message says. When a host call is
// refused it reports the error in a short message (when the host still
// takes one) and returns Handled; "ok" is the canary, answered "ok".
package main

import (
	"strconv"
	"strings"

	"github.com/aviary-im/aviary/plugins/sdk"
	"github.com/aviary-im/aviary/wire"
)

func init() {
	sdk.Handle(sdk.Inbound|sdk.Deliver, func(point uint32, session string, st *wire.Element) uint32 {
		if st.Name != "message" || st.Type() == "error" || strings.Contains(st.To(), "@") {
			return sdk.Continue // only commands to the domain
		}
		var err error
		switch st.ChildText("body", "") {
		case "ok":
			err = sdk.Send(reply(st, "ok"))
			if err == nil {
				return sdk.Handled
			}
		case "send-big": // one stanza over the stanza bound
			err = sdk.Send(reply(st, strings.Repeat("x", 300<<10)))
		case "send-many": // stanzas within the stanza bound until the bytes run out
			for i := 0; i < 100 && err == nil; i++ {
				err = sdk.Send(reply(st, strings.Repeat("y", 20<<10)))
			}
		case "log-many": // tiny calls until the calls run out
			for i := 0; i < 1000 && err == nil; i++ {
				err = sdk.Log(sdk.LevelDebug, "tick")
			}
		case "log-big": // cut to 4 KiB, not refused
			if err = sdk.Log(sdk.LevelInfo, strings.Repeat("z", 8<<20)); err == nil {
				err = sdk.Send(reply(st, "log-big accepted"))
				if err == nil {
					return sdk.Handled
				}
			}
		case "kv-big": // one value over the bytes bound
			err = sdk.Set("big", strings.Repeat("v", 100<<10))
		case "kv-fill": // values within the bytes bound until the store is full
			for i := 0; i < 10 && err == nil; i++ {
				err = sdk.Set("k"+strconv.Itoa(i), strings.Repeat("v", 6<<10))
			}
		case "set-big": // a replacement over the stanza bound (refused in the SDK)
			st.Child("body", "").SetText(strings.Repeat("w", 100<<10))
			return sdk.Continue
		default:
			return sdk.Continue
		}
		if err == nil {
			return sdk.Continue
		}
		_ = sdk.Send(reply(st, "refused: "+err.Error())) // may be refused too
		return sdk.Handled
	})
}

func reply(st *wire.Element, body string) *wire.Element {
	return wire.New("message", "type", "chat", "from", st.To(), "to", st.From()).
		Append(wire.New("body").SetText(body))
}

func main() {}
