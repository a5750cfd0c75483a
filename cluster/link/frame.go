package link

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Frame layout, after the handshake, in both directions:
//
//	u32 length of the rest (big endian)
//	u8  type (frameSend, frameCall, frameReply, frameError)
//	u64 correlation id (0 for frameSend)
//	u8  kind length, kind bytes (empty in replies)
//	payload (the rest)
const (
	frameSend  byte = 1
	frameCall  byte = 2
	frameReply byte = 3
	frameError byte = 4 // payload: u8 error code, message
	// frameAck (receiver → sender): the id is how many Send and Call
	// frames the receiver has read and handled on this connection so far.
	frameAck byte = 5

	headerLen = 4 + 1 + 8 + 1
	// MaxFrame bounds one frame (kind + payload + header).
	MaxFrame = 16 << 20
)

// Error codes in frameError payloads.
const (
	codeNoHandler byte = 1
	codeHandler   byte = 2
)

var errFrameTooBig = errors.New("link: frame too large")

type frame struct {
	typ     byte
	id      uint64
	kind    string
	payload []byte
}

// buf is a pooled encoded frame. done, when set (SendNotify), learns
// whether the peer handled it.
type buf struct {
	b    []byte
	done func(handled bool)
}

var bufPool = sync.Pool{New: func() any { return &buf{b: make([]byte, 0, 1024)} }}

func getBuf() *buf { return bufPool.Get().(*buf) }

func putBuf(b *buf) {
	b.done = nil
	if cap(b.b) > 256<<10 {
		return // let big buffers go
	}
	b.b = b.b[:0]
	bufPool.Put(b)
}

// encode appends one frame to b.
func encode(b []byte, typ byte, id uint64, kind string, payload []byte) ([]byte, error) {
	if len(kind) > 255 {
		return b, fmt.Errorf("link: kind %q longer than 255 bytes", kind)
	}
	n := 1 + 8 + 1 + len(kind) + len(payload)
	if n+4 > MaxFrame {
		return b, errFrameTooBig
	}
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, typ)
	b = binary.BigEndian.AppendUint64(b, id)
	b = append(b, byte(len(kind)))
	b = append(b, kind...)
	b = append(b, payload...)
	return b, nil
}

// frameReader reads frames from one connection. Payloads are fresh slices
// the caller owns; kinds are interned so a steady stream of one kind
// allocates only the payload.
type frameReader struct {
	r       *bufio.Reader
	scratch [headerLen]byte
	kinds   map[string]string
}

func (fr *frameReader) next() (frame, error) {
	f, body, klen, err := readFrame(fr.r, &fr.scratch)
	if err != nil {
		return f, err
	}
	kb := body[:klen]
	if k, ok := fr.kinds[string(kb)]; ok {
		f.kind = k
	} else {
		f.kind = string(kb)
		if fr.kinds == nil {
			fr.kinds = map[string]string{}
		}
		if len(fr.kinds) < 256 {
			fr.kinds[f.kind] = f.kind
		}
	}
	return f, nil
}

// readFrame reads one frame into a fresh body (kind then payload);
// scratch is reused for the header.
func readFrame(r io.Reader, scratch *[headerLen]byte) (frame, []byte, int, error) {
	var f frame
	if _, err := io.ReadFull(r, scratch[:]); err != nil {
		return f, nil, 0, err
	}
	n := binary.BigEndian.Uint32(scratch[0:4])
	if n < headerLen-4 || n+4 > MaxFrame {
		return f, nil, 0, errFrameTooBig
	}
	f.typ = scratch[4]
	f.id = binary.BigEndian.Uint64(scratch[5:13])
	klen := int(scratch[13])
	rest := int(n) - (headerLen - 4)
	if klen > rest {
		return f, nil, 0, errors.New("link: bad frame")
	}
	body := make([]byte, rest)
	if _, err := io.ReadFull(r, body); err != nil {
		return f, nil, 0, err
	}
	f.payload = body[klen:]
	if len(f.payload) == 0 {
		f.payload = nil
	}
	return f, body, klen, nil
}
