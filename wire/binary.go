package wire

import (
	"encoding/binary"
	"errors"
)

// The binary form of an element is a compact, allocation-light encoding
// used where both ends are ours: node-to-node links and the WebAssembly
// plugin ABI. Decoding it is several times cheaper than parsing XML.
//
//	element  = string(name) uvarint(nattrs) {string(attr) string(value)}
//	           string(text) uvarint(nchildren) {element} string(tail)
//	string   = uvarint(len) bytes

// ErrBadBinary means the bytes are not a binary-encoded element.
var ErrBadBinary = errors.New("wire: malformed binary element")

// AppendBinary appends e's binary form to buf.
func AppendBinary(buf []byte, e *Element) []byte {
	buf = appendString(buf, e.Name)
	buf = binary.AppendUvarint(buf, uint64(len(e.Attrs)))
	for _, a := range e.Attrs {
		buf = appendString(buf, a.Name)
		buf = appendString(buf, a.Value)
	}
	buf = appendString(buf, e.Text)
	buf = binary.AppendUvarint(buf, uint64(len(e.Children)))
	for _, c := range e.Children {
		buf = AppendBinary(buf, c)
	}
	return appendString(buf, e.Tail)
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// DecodeBinary decodes one element and returns the bytes after it.
func DecodeBinary(data []byte) (*Element, []byte, error) {
	return decodeBinary(data, 0)
}

func decodeBinary(data []byte, depth int) (*Element, []byte, error) {
	if depth > DefaultMaxDepth {
		return nil, nil, ErrTooDeep
	}
	e := &Element{}
	var err error
	if e.Name, data, err = readString(data); err != nil {
		return nil, nil, err
	}
	n, data, err := readCount(data)
	if err != nil {
		return nil, nil, err
	}
	if n > 0 {
		e.Attrs = make([]Attr, n)
		for i := range e.Attrs {
			if e.Attrs[i].Name, data, err = readString(data); err != nil {
				return nil, nil, err
			}
			if e.Attrs[i].Value, data, err = readString(data); err != nil {
				return nil, nil, err
			}
		}
	}
	if e.Text, data, err = readString(data); err != nil {
		return nil, nil, err
	}
	if n, data, err = readCount(data); err != nil {
		return nil, nil, err
	}
	if n > 0 {
		e.Children = make([]*Element, n)
		for i := range e.Children {
			if e.Children[i], data, err = decodeBinary(data, depth+1); err != nil {
				return nil, nil, err
			}
		}
	}
	if e.Tail, data, err = readString(data); err != nil {
		return nil, nil, err
	}
	return e, data, nil
}

func readCount(data []byte) (int, []byte, error) {
	n, k := binary.Uvarint(data)
	// Every attribute or child takes at least one byte, which bounds
	// counts by what is left and stops a forged count from allocating.
	if k <= 0 || n > uint64(len(data)-k) {
		return 0, nil, ErrBadBinary
	}
	return int(n), data[k:], nil
}

func readString(data []byte) (string, []byte, error) {
	n, k := binary.Uvarint(data)
	if k <= 0 || n > uint64(len(data)-k) {
		return "", nil, ErrBadBinary
	}
	end := k + int(n)
	return string(data[k:end]), data[end:], nil
}
