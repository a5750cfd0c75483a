//go:build wasip1

// A plugin that never returns: the host must cut it off.
package main

import (
	"github.com/aviary-im/aviary/plugins/sdk"
	"github.com/aviary-im/aviary/wire"
)

var sink int

func init() {
	sdk.Handle(sdk.Inbound, func(point uint32, session string, st *wire.Element) uint32 {
		for {
			sink++
		}
	})
}

func main() {}
