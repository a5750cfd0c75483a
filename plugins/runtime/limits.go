package runtime

import (
	"fmt"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// Per-stanza bounds on host calls.
//
// The guest's memory limit (Options.MemoryLimitPages) does not cover what
// the host copies for it: every log, send, set_stanza and kv_set copies
// guest bytes into host memory, and a guest could hand over its whole
// memory in a loop (one stanza once raised the node's RSS by 1.5 GB). So
// each call into aviary_on_stanza carries a budget: at most MaxHostCalls
// host calls copying at most MaxHostBytes in all, no sent or replacement
// stanza over MaxStanzaBytes, and kv_set within the plugin's MaxKVBytes
// store. The bound is checked before anything is copied.
//
// A call past a bound does nothing and is refused: kv_get returns -2, and
// last_error gives the reason to the guest (the SDK turns it into an
// error). The first refusal of a stanza is logged at warn; every refusal
// is counted by limit (Plugin.Refused, aviary_plugin_refused_calls_total).
// The guest keeps running and decides; what it had done within the bounds
// stands (accepted sends are routed). If it then drops the stanza or says
// it handled it, the stanza's sender is answered with
// <resource-constraint/> at the inbound points, where the router bounces
// errors; at the delivery and offline points the stanza passes on instead,
// since an error there would drop a stanza already accepted.

// maxLogMessage is the longest log line a guest writes; longer ones are
// cut (and counted at this length), not refused.
const maxLogMessage = 4 << 10

// limit names the bound a refused call hit, as the metric label.
type limit int

const (
	limitCalls limit = iota
	limitBytes
	limitStanza
	limitKV
	numLimits
)

func (l limit) String() string {
	return [...]string{"calls", "bytes", "stanza", "kv"}[l]
}

// errLimitStanza answers a stanza the guest swallowed after a refusal.
var errLimitStanza = wire.ErrResourceConstraint.WithText("a server plugin reached its limits while handling this stanza")

// callState is what host functions of one call into aviary_on_stanza read
// and write. Only the goroutine running that call touches it.
type callState struct {
	p        *Plugin
	pt       plugins.Point
	replaced []byte // set by set_stanza
	calls    int    // host calls made
	bytes    uint64 // bytes admitted for copying out of guest memory
	lastErr  string // why the latest host call failed; "" when it did not
	refused  int    // host calls refused
}

// admit accounts for one host call that copies n bytes out of guest
// memory; one (when > 0) bounds n alone (a stanza). It reports false, with
// the refusal recorded, when the call must not run.
func (cs *callState) admit(fn string, n uint64, one int) bool {
	o := &cs.p.rt.opts
	cs.calls++
	switch {
	case cs.calls > o.MaxHostCalls:
		return cs.refuse(fn, limitCalls, fmt.Sprintf("%s refused: more than %d host calls while handling one stanza (plugins.wasm.max_host_calls)",
			fn, o.MaxHostCalls))
	case one > 0 && n > uint64(one):
		return cs.refuse(fn, limitStanza, fmt.Sprintf("%s refused: a stanza of %d bytes is over %d (c2s.max_stanza_bytes)", fn, n, one))
	case cs.bytes+n > uint64(o.MaxHostBytes):
		return cs.refuse(fn, limitBytes, fmt.Sprintf("%s refused: %d more bytes would pass the %d the host copies while handling one stanza (plugins.wasm.max_host_bytes)",
			fn, n, o.MaxHostBytes))
	}
	cs.bytes += n
	cs.lastErr = ""
	return true
}

// refuse records a refused call; it always reports false.
func (cs *callState) refuse(fn string, l limit, msg string) bool {
	cs.lastErr = msg
	cs.p.refused[l].Add(1)
	if cs.refused == 0 {
		cs.p.log.Warn("plugin host call refused: past a per-stanza bound", "call", fn, "limit", l.String(), "point", int(cs.pt), "err", msg)
	}
	cs.refused++
	return false
}

// outOfRange records a call whose pointer and length are outside guest
// memory: the guest's bug, not a bound.
func (cs *callState) outOfRange(fn string) {
	cs.lastErr = fn + " failed: pointer and length outside the plugin's memory"
}

// Refused returns how many host calls were refused, by limit ("calls",
// "bytes", "stanza", "kv").
func (p *Plugin) Refused() map[string]int64 {
	out := make(map[string]int64, numLimits)
	for l := range numLimits {
		out[l.String()] = p.refused[l].Load()
	}
	return out
}
