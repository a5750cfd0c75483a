package placement

import (
	"encoding/binary"
	"errors"

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
