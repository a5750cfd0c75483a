package plugins

import "context"

// AckHolder holds the acknowledgement of the stanza being routed: the
// router puts one in the context it runs interceptors with when the
// sending client counts on the server's acknowledgements (XEP-0198 stream
// management) and the stanza is one crash safety protects. HoldAck takes a
// hold and returns its release, or nil when nothing waits for an
// acknowledgement; the client is acknowledged this stanza (and every later
// one) only once every hold is released.
type AckHolder interface {
	HoldAck() (release func())
}

type ackHolderKey struct{}

// WithAckHolder returns ctx carrying h for HoldAck (the router's side).
func WithAckHolder(ctx context.Context, h AckHolder) context.Context {
	return context.WithValue(ctx, ackHolderKey{}, h)
}

// AckHolderFrom returns the AckHolder ctx carries, or nil.
func AckHolderFrom(ctx context.Context) AckHolder {
	h, _ := ctx.Value(ackHolderKey{}).(AckHolder)
	return h
}

// HoldAck holds the sending client's acknowledgement of the stanza being
// routed until the returned function runs (exactly once; it may run on any
// goroutine and must not be held for long: a plugin releases it when its
// own durable write committed or failed). It returns nil when nothing
// waits for an acknowledgement. Call it on the routing's goroutine, inside
// Intercept, not from work the plugin started elsewhere.
//
// A plugin whose write must survive a crash of the node once the client
// saw its stanza acknowledged (the message archive) takes a hold before
// it queues the write and releases it in the write's completion.
func HoldAck(ctx context.Context) (release func()) {
	if h := AckHolderFrom(ctx); h != nil {
		return h.HoldAck()
	}
	return nil
}
