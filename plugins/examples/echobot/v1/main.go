//go:build wasip1

// Command echobot (version 1) is a server-side bot: a message to the
// domain whose body starts with "!" is a command, answered by the server.
// "!ping" answers "pong (v1)"; "!count" answers how many commands the bot
// has answered, kept in the plugin's key-value store.
package main

import (
	"strconv"
	"strings"

	"github.com/aviary-im/aviary/plugins/sdk"
	"github.com/aviary-im/aviary/wire"
)

const version = "v1"

func init() {
	sdk.Handle(sdk.Inbound, func(point uint32, session string, st *wire.Element) uint32 {
		if st.Name != "message" || strings.Contains(st.To(), "@") || st.To() == "" {
			return sdk.Continue
		}
		body := strings.TrimSpace(st.ChildText("body", ""))
		if !strings.HasPrefix(body, "!") {
			return sdk.Continue
		}
		n, _ := strconv.Atoi(get("count"))
		n++
		sdk.Set("count", strconv.Itoa(n))
		var answer string
		switch body {
		case "!ping":
			answer = "pong (" + version + ")"
		case "!count":
			answer = strconv.Itoa(n)
		default:
			answer = "unknown command " + body
		}
		reply := wire.New("message", "type", "chat", "from", st.To(), "to", st.From())
		reply.Append(wire.New("body").SetText(answer))
		sdk.Send(reply)
		return sdk.Handled
	})
}

func get(k string) string {
	v, _ := sdk.Get(k)
	return v
}

func main() {}
