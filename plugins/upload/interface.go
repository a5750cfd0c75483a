package upload

import (
	"context"
	"io"
	"time"
)

// fileStore keeps the contents of uploaded files (upload.store). What is
// known of a file (its meta item, its owner in the index, its reservation
// in the ledger) is in the shared module stores whichever store keeps its
// bytes, so any node serves any file.
type fileStore interface {
	// create begins the contents of file id of owner.
	create(ctx context.Context, owner, id string) (fileWriter, error)
	// open returns the contents of a finished file of size bytes.
	open(ctx context.Context, owner, id string, size int) (io.ReadSeekCloser, error)
	// remove deletes a file's contents; contents already gone are no
	// error.
	remove(ctx context.Context, owner, id string) error
	// sweep removes what uploads left behind unfinished more than age
	// ago (a node that stopped in the middle of one).
	sweep(ctx context.Context, age time.Duration) error
}

// fileWriter takes the contents of one upload, chunk by chunk in order.
type fileWriter interface {
	write(chunk []byte) error
	// commit makes the contents whole and readable from every node.
	commit() error
	// abort removes what was written, committed or not.
	abort()
}
