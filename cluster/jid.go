package cluster

import "strings"

// BareJID returns the bare part of a JID: everything before the first '/'.
// Route keys are full JIDs; implementations index them by this.
func BareJID(full string) string {
	if i := strings.IndexByte(full, '/'); i >= 0 {
		return full[:i]
	}
	return full
}
