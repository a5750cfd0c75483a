package c2s

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// chunkConn returns its chunks one per Read, as a socket returns what
// arrived in one segment.
type chunkConn struct {
	net.Conn
	chunks [][]byte
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func record(bodyLen int, fill byte) []byte {
	r := []byte{23, 3, 3, byte(bodyLen >> 8), byte(bodyLen)}
	return append(r, bytes.Repeat([]byte{fill}, bodyLen)...)
}

// TestRecordConnStopsAtRecordEnds checks that no Read crosses the end of
// a TLS record, whatever the socket's chunks and the reader's buffer
// sizes, that the bytes come through unchanged, and that drained is true
// exactly between records with nothing buffered.
func TestRecordConnStopsAtRecordEnds(t *testing.T) {
	recs := [][]byte{record(3, 'a'), record(0, 0), record(1000, 'b'), record(1, 'c'), record(20000, 'd')}
	var stream []byte
	var ends []int // offsets in stream where a record ends
	for _, r := range recs {
		stream = append(stream, r...)
		ends = append(ends, len(stream))
	}
	splits := map[string][]int{
		"all in one read":  {len(stream)},
		"byte by byte":     nil,
		"header split":     {2, 4, 7, 100, len(stream)},
		"records in pairs": {ends[1], ends[3], len(stream)},
	}
	for name, cuts := range splits {
		for _, readSize := range []int{1, 3, 512, 64 << 10} {
			t.Run(name, func(t *testing.T) {
				var chunks [][]byte
				if cuts == nil {
					for i := range stream {
						chunks = append(chunks, stream[i:i+1])
					}
				} else {
					prev := 0
					for _, c := range cuts {
						chunks = append(chunks, stream[prev:c])
						prev = c
					}
				}
				rc := &recordConn{Conn: &chunkConn{chunks: chunks}}
				var got []byte
				p := make([]byte, readSize)
				for {
					n, err := rc.Read(p)
					start := len(got)
					got = append(got, p[:n]...)
					for _, e := range ends {
						if start < e && len(got) > e {
							t.Fatalf("read [%d,%d) crosses the record end at %d", start, len(got), e)
						}
					}
					atEnd := false
					for _, e := range ends {
						atEnd = atEnd || len(got) == e
					}
					if want := atEnd && rc.buf == nil; rc.drained() != want {
						t.Fatalf("after %d bytes drained() = %v, want %v", len(got), rc.drained(), want)
					}
					if err != nil {
						break
					}
				}
				if !bytes.Equal(got, stream) {
					t.Fatalf("got %d bytes, want %d unchanged", len(got), len(stream))
				}
			})
		}
	}
}
