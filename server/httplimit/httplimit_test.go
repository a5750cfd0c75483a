package httplimit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serve runs l.Server(h) on a loopback port and returns its address.
func serve(t *testing.T, l Limits, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := l.Server(h)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// readAllUntilClosed reads what the server sends until it closes the
// connection. guard only keeps a broken server from hanging the test: it
// is far beyond the limits under test, and reaching it fails the test.
func readAllUntilClosed(t *testing.T, c net.Conn, guard time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(guard))
	data, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %v (read so far: %q)", guard, data)
	}
	return string(data)
}

// A body sent most of the way and then stalled (the slowloris of the
// issue: 257 KiB announced, less sent) is answered 408 and its connection
// closed once ReadBody has passed.
func TestStalledBodyIsCutOff(t *testing.T) {
	handlerErr := make(chan error, 1)
	addr := serve(t, Limits{ReadBody: 200 * time.Millisecond}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		handlerErr <- err
		// Like BOSH: a failed read is a client that went away; no answer.
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 257<<10)
	c.Write([]byte(strings.Repeat("a", 200<<10)))
	got := readAllUntilClosed(t, c, 20*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.1 408 ") {
		t.Errorf("answer %q, want 408", got)
	}
	if err := <-handlerErr; err == nil {
		t.Error("the handler read the whole stalled body")
	}
}

// A client that sends its headers and then one byte now and then is cut
// off too: the deadline covers the whole body, not each read.
func TestTrickledBodyIsCutOff(t *testing.T) {
	addr := serve(t, Limits{ReadBody: 300 * time.Millisecond}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
	closed := make(chan string, 1)
	go func() {
		data, _ := io.ReadAll(c)
		closed <- string(data)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	guard := time.After(20 * time.Second)
	for sent := 0; ; sent++ {
		select {
		case got := <-closed:
			if !strings.HasPrefix(got, "HTTP/1.1 408 ") {
				t.Errorf("answer %q, want 408", got)
			}
			if sent >= 1000 {
				t.Errorf("the server waited for the whole body (%d bytes)", sent)
			}
			return
		case <-guard:
			t.Fatal("a client trickling its body was never cut off")
		case <-tick.C:
			c.Write([]byte("a")) // one byte per tick, 20 bytes per second
		}
	}
}

// Once the body has been read, the handler may hold the request for longer
// than ReadBody (a BOSH long-poll), and its answer arrives on a connection
// that stays usable for the next request.
func TestHeldRequestOutlivesBodyDeadline(t *testing.T) {
	const readBody = 100 * time.Millisecond
	addr := serve(t, Limits{ReadBody: readBody, Write: time.Second}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		hold := time.NewTimer(5 * readBody) // the long-poll's wait
		defer hold.Stop()
		select {
		case <-hold.C:
			fmt.Fprintf(w, "held %s", body)
		case <-r.Context().Done():
		}
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 2 {
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != "held hello" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, got)
		}
	}
}

// A client that stops reading its response is disconnected once Write has
// passed, instead of holding the handler and the response forever.
func TestUnreadResponseIsCutOff(t *testing.T) {
	writeErr := make(chan error, 1)
	addr := serve(t, Limits{Write: 200 * time.Millisecond}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case err := <-writeErr:
		if !isTimeout(err) {
			t.Errorf("write ended with %v, want a timeout", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the handler still writes to a client that reads nothing")
	}
}

// Bodies past MaxBodyBytes fail to read with *http.MaxBytesError, and the
// connection is closed after the answer rather than drained.
func TestBodyOverLimit(t *testing.T) {
	addr := serve(t, Limits{MaxBodyBytes: 1024, ReadBody: 10 * time.Second}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		io.WriteString(w, "ok")
	}))
	for _, tc := range []struct {
		size int
		want int
	}{{1024, 200}, {1025, 413}, {8 << 20, 413}} {
		resp, err := http.Post("http://"+addr+"/", "text/plain", strings.NewReader(strings.Repeat("a", tc.size)))
		if err != nil {
			t.Fatalf("%d bytes: %v", tc.size, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%d bytes: %d, want %d", tc.size, resp.StatusCode, tc.want)
		}
		if tc.want == 413 && !resp.Close {
			t.Errorf("%d bytes: the connection is kept after an oversized body", tc.size)
		}
	}
}

// Headers that never end are cut off by ReadHeader.
func TestStalledHeadersAreCutOff(t *testing.T) {
	addr := serve(t, Limits{ReadHeader: 200 * time.Millisecond}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	readAllUntilClosed(t, c, 20*time.Second)
}
