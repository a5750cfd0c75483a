package placement

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// The payloads between placement instances: length-prefixed byte strings
// (uvarint length, bytes) and stanzas in wire's binary encoding.

var errMalformed = errors.New("placement: malformed message from another node")

func appendString(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readString(b []byte) (s, rest []byte, ok bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return nil, nil, false
	}
	return b[n : n+int(l)], b[n+int(l):], true
}

// encodeDeliver: the key, then each stanza of the batch.
func encodeDeliver(key string, batch []*item) []byte {
	b := appendString(nil, []byte(key))
	for _, it := range batch {
		if it.el != nil {
			b = wire.AppendBinary(b, it.el)
		}
	}
	return b
}

func decodeDeliver(b []byte) (string, []*wire.Element, error) {
	key, rest, ok := readString(b)
	if !ok {
		return "", nil, errMalformed
	}
	var els []*wire.Element
	for len(rest) > 0 {
		el, r, err := wire.DecodeBinary(rest)
		if err != nil {
			return "", nil, errMalformed
		}
		if !el.IsStanza() {
			return "", nil, errMalformed
		}
		els = append(els, el)
		rest = r
	}
	return string(key), els, nil
}

// encodeDeliverV2: the key, then for each stanza of the batch the time
// left until its deadline (uvarint milliseconds, measured at now) and the
// stanza. Durations rather than instants: the nodes' clocks may differ.
func encodeDeliverV2(key string, batch []*item, now time.Time) []byte {
	b := appendString(nil, []byte(key))
	for _, it := range batch {
		if it.el != nil {
			b = binary.AppendUvarint(b, uint64(max(it.deadline.Sub(now), 0)/time.Millisecond))
			b = wire.AppendBinary(b, it.el)
		}
	}
	return b
}

// maxBudget bounds a deadline another node asks for.
const maxBudget = 10 * time.Minute

func decodeDeliverV2(b []byte, now time.Time) (string, []*wire.Element, []time.Time, error) {
	key, rest, ok := readString(b)
	if !ok {
		return "", nil, nil, errMalformed
	}
	var els []*wire.Element
	var deadlines []time.Time
	for len(rest) > 0 {
		ms, n := binary.Uvarint(rest)
		if n <= 0 {
			return "", nil, nil, errMalformed
		}
		el, r, err := wire.DecodeBinary(rest[n:])
		if err != nil || !el.IsStanza() {
			return "", nil, nil, errMalformed
		}
		els = append(els, el)
		deadlines = append(deadlines, now.Add(time.Duration(min(ms, uint64(maxBudget/time.Millisecond)))*time.Millisecond))
		rest = r
	}
	return string(key), els, deadlines, nil
}

// encodeDeliverReply: a status byte, then with statusDone one byte per
// stanza: 1 when it was not handled.
func encodeDeliverReply(status byte, unhandled []bool) []byte {
	b := make([]byte, 1, 1+len(unhandled))
	b[0] = status
	for _, u := range unhandled {
		if u {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	return b
}

func decodeDeliverReply(b []byte, n int) (byte, []bool, error) {
	if len(b) == 0 {
		return 0, nil, errMalformed
	}
	if b[0] != statusDone {
		return b[0], nil, nil
	}
	if len(b) != 1+n {
		return 0, nil, errMalformed
	}
	out := make([]bool, n)
	for i, v := range b[1:] {
		out[i] = v != 0
	}
	return statusDone, out, nil
}

// encodeTake: a status byte, then the handed-over states.
func encodeTake(status byte, states [][]byte) []byte {
	b := []byte{status}
	for _, s := range states {
		b = appendString(b, s)
	}
	return b
}

func decodeTake(b []byte) (byte, [][]byte, error) {
	if len(b) == 0 {
		return 0, nil, errMalformed
	}
	status, rest := b[0], b[1:]
	var states [][]byte
	for len(rest) > 0 {
		s, r, ok := readString(rest)
		if !ok {
			return 0, nil, errMalformed
		}
		states = append(states, append([]byte(nil), s...))
		rest = r
	}
	return status, states, nil
}

// encodeStrings: parts one after the other.
func encodeStrings(key string, state []byte) []byte {
	return appendString(appendString(nil, []byte(key)), state)
}

func decodeStrings(b []byte, n int) ([][]byte, error) {
	out := make([][]byte, 0, n)
	for range n {
		s, rest, ok := readString(b)
		if !ok {
			return nil, errMalformed
		}
		out = append(out, append([]byte(nil), s...))
		b = rest
	}
	if len(b) != 0 {
		return nil, errMalformed
	}
	return out, nil
}
