// Package httplimit bounds what one HTTP request may cost a node: the time
// its client may take to send the headers and the body, the time it may
// take to read the response, how long an idle keep-alive connection is
// kept, and the size of the headers and the body. Both HTTP listeners
// build their http.Server with it: server/httpd (BOSH, WebSocket,
// host-meta) and admin/backend (console, JSON API, /metrics).
//
// Without it, 2,000 requests that sent most of a 257 KiB BOSH body and
// stopped held 900 MB and were never closed, and a client sending one byte
// every 3 s kept its request for 330 s.
//
// Why per-request deadlines rather than http.Server's ReadTimeout and
// WriteTimeout: those count from the start of a request to the end of its
// response, but a BOSH long-poll holds its request for up to `wait`
// seconds (60 by default) before answering, and a WebSocket lives for hours
// after the upgrade. Here the read deadline covers the body only and is
// lifted as soon as the body has been read to its end, and the write
// deadline starts when the handler first writes. A held request is bounded
// by its protocol's own timers; only the upload and the download are
// bounded here.
package httplimit

import (
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// DefaultMaxHeaderBytes caps the request line and headers when
// Limits.MaxHeaderBytes is zero. Browsers and XMPP web clients send a few
// KiB; net/http's own default is 1 MiB, which a refused request could
// then copy into a log line.
const DefaultMaxHeaderBytes = 64 << 10

// Limits of one HTTP listener. Zero durations mean no limit.
type Limits struct {
	// ReadHeader bounds reading the request line and headers.
	ReadHeader time.Duration
	// ReadBody bounds reading the request body, from the end of the
	// headers to its last byte. A slower client gets 408 and its
	// connection is closed.
	ReadBody time.Duration
	// Write bounds writing one response, from its first byte. A client
	// that does not read is disconnected.
	Write time.Duration
	// Idle bounds the wait for the next request on a keep-alive connection.
	Idle time.Duration
	// MaxBodyBytes caps every request body: reading past it fails with
	// *http.MaxBytesError and the connection is closed after the
	// response. Zero leaves the cap to the handlers.
	MaxBodyBytes int64
	// MaxHeaderBytes caps the request line and headers. Zero means
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int
}

// Server returns an http.Server serving h under l. The caller adds what
// is not a limit (ErrorLog, BaseContext, TLS).
func (l Limits) Server(h http.Handler) *http.Server {
	mh := l.MaxHeaderBytes
	if mh <= 0 {
		mh = DefaultMaxHeaderBytes
	}
	return &http.Server{
		Handler:           l.Handler(h),
		ReadHeaderTimeout: l.ReadHeader,
		IdleTimeout:       l.Idle,
		MaxHeaderBytes:    mh,
	}
}

// Handler wraps h with the per-request limits (body size, body read
// deadline, response write deadline). Server applies it; it is exported
// for handlers served by an http.Server built elsewhere.
func (l Limits) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		var body *deadlineBody
		if r.Body != nil && r.Body != http.NoBody {
			if l.MaxBodyBytes > 0 {
				// Before w is wrapped: the server closes the connection
				// after the reply only when it sees its own writer here.
				r.Body = http.MaxBytesReader(w, r.Body, l.MaxBodyBytes)
			}
			if l.ReadBody > 0 {
				_ = rc.SetReadDeadline(time.Now().Add(l.ReadBody))
				body = &deadlineBody{ReadCloser: r.Body, rc: rc}
				r.Body = body
			}
		}
		dw := &deadlineWriter{ResponseWriter: w, rc: rc, d: l.Write}
		h.ServeHTTP(dw, r)
		if body != nil && body.timedOut && !dw.wrote {
			// The handler gave up on the body without answering (BOSH
			// treats a failed read as a client that went away).
			dw.Header().Set("Connection", "close")
			http.Error(dw, "request body not received in time", http.StatusRequestTimeout)
		}
	})
}

// deadlineBody lifts the read deadline once the body has been read to its
// end, so that a handler holding the request afterwards (a BOSH long-poll)
// is not cut off, and remembers a read that timed out.
type deadlineBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	done     bool
	timedOut bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF && !b.done:
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil && isTimeout(err):
		b.timedOut = true
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// deadlineWriter starts the write deadline at the first byte of the
// response. Informational responses (a WebSocket's 101 before the
// hijack) do not start it.
type deadlineWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	d     time.Duration
	wrote bool
}

func (w *deadlineWriter) start() {
	if w.wrote {
		return
	}
	w.wrote = true
	if w.d > 0 {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.d))
	}
}

func (w *deadlineWriter) WriteHeader(code int) {
	if code >= 200 {
		w.start()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.start()
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController and WebSocket libraries reach the
// server's writer (flush, hijack, deadlines).
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
