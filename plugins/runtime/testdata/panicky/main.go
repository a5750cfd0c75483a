//go:build wasip1

// A plugin that panics on every stanza: the host must survive it.
package main

import (
	"github.com/aviary-im/aviary/plugins/sdk"
	"github.com/aviary-im/aviary/wire"
)

func init() {
	sdk.Handle(sdk.Inbound, func(point uint32, session string, st *wire.Element) uint32 {
		var m map[string]int
		m["boom"]++ // nil map write: a guest panic, which traps
		return sdk.Continue
	})
}

func main() {}
