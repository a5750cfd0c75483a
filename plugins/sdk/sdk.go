//go:build wasip1

// Package sdk is the guest side of Aviary's WebAssembly plugin ABI, for
// plugins written in Go and built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
//
// A plugin's main package calls sdk.Handle in init with a function that
// sees each stanza (as a *wire.Element) at the points it asked for and
// returns a verdict. See plugins/GUIDE.md for the ABI itself.
package sdk

import (
	"unsafe"

	"github.com/aviary-im/aviary/wire"
)

// Verdicts, as the host reads them.
const (
	Continue uint32 = 0
	Drop     uint32 = 1
	Handled  uint32 = 2
)

// Points, as bits of the mask a plugin declares.
const (
	Inbound       uint32 = 1 << 0 // from a local client, before routing
	Deliver       uint32 = 1 << 1 // about to be written to a local session
	Offline       uint32 = 1 << 2 // about to be stored offline
	RemoteInbound uint32 = 1 << 3 // arrived over s2s
)

// Log levels for Log.
const (
	LevelDebug uint32 = 0
	LevelInfo  uint32 = 1
	LevelWarn  uint32 = 2
	LevelError uint32 = 3
)

//go:wasmimport aviary log
func hostLog(level uint32, ptr uint32, n uint32)

//go:wasmimport aviary send
func hostSend(ptr uint32, n uint32)

//go:wasmimport aviary set_stanza
func hostSetStanza(ptr uint32, n uint32)

//go:wasmimport aviary kv_get
func hostKVGet(kptr, klen, vptr, vcap uint32) int32

//go:wasmimport aviary kv_set
func hostKVSet(kptr, klen, vptr, vlen uint32)

//go:wasmimport aviary last_error
func hostLastError(ptr, capacity uint32) uint32

// RefusedError is a host call the node refused: it did nothing. The node
// bounds what one plugin may make it do per stanza (host calls, bytes
// copied, stanza size, key-value store size; plugins/GUIDE.md); Msg names
// the bound and its config key.
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return e.Msg }

// lastError returns why the latest host call failed, or nil.
func lastError() error {
	var buf [256]byte
	n := hostLastError(ptrOf(buf[:]), uint32(len(buf)))
	if n == 0 {
		return nil
	}
	if int(n) <= len(buf) {
		return &RefusedError{Msg: string(buf[:n])}
	}
	big := make([]byte, n)
	n = hostLastError(ptrOf(big), uint32(len(big)))
	return &RefusedError{Msg: string(big[:min(int(n), len(big))])}
}

// Handler sees one stanza at one point. session is the local session's full
// JID ("" when none). It may change st in place and return Continue to pass
// the change on.
type Handler func(point uint32, session string, st *wire.Element) uint32

var (
	handler Handler
	points  uint32 = Inbound | Deliver
	inbuf   []byte
	outbuf  []byte
)

// Handle installs the plugin's handler and the points it wants.
func Handle(mask uint32, h Handler) {
	points, handler = mask, h
}

func ptrOf(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

// Log writes to the node's log, tagged with the plugin's name (cut at
// 4 KiB). The error is a *RefusedError past a per-stanza bound.
func Log(level uint32, msg string) error {
	b := []byte(msg)
	hostLog(level, ptrOf(b), uint32(len(b)))
	return lastError()
}

// Send routes a stanza through the node's router (from must be the
// server's domain or a local user's JID) once the handler returns. The
// error is a *RefusedError when the node refused it (a per-stanza bound):
// then it is not sent.
func Send(el *wire.Element) error {
	b := el.Bytes()
	hostSend(ptrOf(b), uint32(len(b)))
	return lastError()
}

// Get reads the plugin's key-value store; ok is false when unset, and
// also when the node refused the read (a per-stanza bound).
func Get(key string) (string, bool) {
	k := []byte(key)
	buf := make([]byte, 4096)
	n := hostKVGet(ptrOf(k), uint32(len(k)), ptrOf(buf), uint32(len(buf)))
	if n < 0 {
		return "", false
	}
	if int(n) > len(buf) {
		buf = make([]byte, n)
		n = hostKVGet(ptrOf(k), uint32(len(k)), ptrOf(buf), uint32(len(buf)))
		if n < 0 || int(n) > len(buf) { // refused, or changed in between
			return "", false
		}
	}
	return string(buf[:n]), true
}

// Set writes the plugin's key-value store (shared by the cluster). The
// error is a *RefusedError when the node refused it (a per-stanza bound,
// or the store's size): then nothing was written.
func Set(key, value string) error {
	k, v := []byte(key), []byte(value)
	hostKVSet(ptrOf(k), uint32(len(k)), ptrOf(v), uint32(len(v)))
	return lastError()
}

//go:wasmexport aviary_alloc
func alloc(size uint32) uint32 {
	if cap(inbuf) < int(size) {
		inbuf = make([]byte, size)
	}
	inbuf = inbuf[:size]
	return ptrOf(inbuf)
}

//go:wasmexport aviary_points
func exportedPoints() uint32 { return points }

// aviary_on_stanza: the host has written "session\x00" followed by the
// stanza in wire's binary form into the buffer it got from aviary_alloc.
//
//go:wasmexport aviary_on_stanza
func onStanza(point uint32, ptr uint32, n uint32) uint32 {
	if handler == nil {
		return Continue
	}
	data := inbuf[:n]
	session := ""
	for i, c := range data {
		if c == 0 {
			session, data = string(data[:i]), data[i+1:]
			break
		}
	}
	el, _, err := wire.DecodeBinary(data)
	if err != nil {
		Log(LevelWarn, "cannot decode stanza: "+err.Error())
		return Continue
	}
	before := string(data) // copy: inbuf may be reused by a nested alloc
	v := handler(point, session, el)
	outbuf = wire.AppendBinary(outbuf[:0], el)
	if string(outbuf) != before {
		hostSetStanza(ptrOf(outbuf), uint32(len(outbuf)))
	}
	return v
}
