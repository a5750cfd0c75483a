package cluster

import "github.com/aviary-im/aviary/wire"

// BareJID returns the bare part of a JID: everything before the first '/'.
// Route keys are full JIDs; implementations index them by this.
func BareJID(full string) string { return wire.BareJID(full) }
