// Package logsafe bounds strings that come from clients before they are
// logged or kept in memory. A username, a URL path or an error message
// quoting client input can be as long as the request that carried it; an
// anonymous client sending five 50 MiB sign-in requests once added 262 MB
// to the admin audit log and the node log, and kept it in memory. Every
// client-supplied string goes through Clip on its way to a log line or a
// kept record.
package logsafe

import (
	"strconv"
	"unicode/utf8"
)

// Field is the default bound of one logged field: room for any JID
// localpart or domain a legitimate client sends (1023 bytes each is the
// protocol maximum, real ones are far shorter) and short enough that a
// log line stays a line.
const Field = 256

// Clip returns s unchanged when it has at most max bytes; otherwise its
// first max bytes (cut at a rune boundary) followed by a marker that says
// how much was dropped, so a clipped value is never mistaken for a real
// one. max <= 0 means Field.
func Clip(s string, max int) string {
	if max <= 0 {
		max = Field
	}
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(+" + strconv.Itoa(len(s)-cut) + " bytes)"
}
