package httpd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins/upload"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/httpd"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

// TestUploadAcrossCluster: three real nodes on one PostgreSQL and a
// Hazelcast member, each with its HTTP listener as upload.url. A user on
// node B finds the upload service, gets a slot, PUTs a file to node B,
// and the file is downloaded whole from nodes A and C, which never saw
// the upload.
func TestUploadAcrossCluster(t *testing.T) { uploadAcrossCluster(t, nil) }

// TestUploadAcrossClusterDirectory is TestUploadAcrossCluster with the
// files in one directory all three nodes share (upload.store:
// directory), as they would over NFS.
func TestUploadAcrossClusterDirectory(t *testing.T) {
	dir := t.TempDir()
	uploadAcrossCluster(t, func(c *conf.UploadConfig) { c.Store, c.Directory = "directory", dir })
	if files, _ := filepath.Glob(filepath.Join(dir, "??", "*")); len(files) != 1 {
		t.Errorf("the directory holds %v, want the one file", files)
	}
}

func uploadAcrossCluster(t *testing.T, tweak func(*conf.UploadConfig)) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and Hazelcast")
	}
	pg := pgtest.Start(t)
	member := hztest.StartMember(t, "aviary-upload")
	start := func(name string) (httpNode, string) {
		addr := servertest.FreeAddr(t)
		return startHTTPNodeWith(t, pg, member, name, "upload.", nil, func(cfg *conf.Config) {
			cfg.HTTP.Listen = addr
			cfg.Upload.URL = "http://" + addr
			if tweak != nil {
				tweak(&cfg.Upload)
			}
		}), "http://" + addr
	}
	a, urlA := start("node-a")
	b, urlB := start("node-b")
	nc, urlC := start("node-c")
	servertest.WaitClustered(t, a.c, b.c, nc.c)
	servertest.CreateUser(t, a.n, "alice", "pw")

	c := servertest.Dial(t, b.n)
	c.Login("alice", "pw", "phone")
	c.Send(`<iq type='get' id='items' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	if items := c.Await("disco#items", func(el *wire.Element) bool { return el.ID() == "items" }); !strings.Contains(items.String(), `jid="upload.localhost"`) {
		t.Fatalf("the domain's items do not list the upload service: %s", items)
	}
	data := make([]byte, 3<<20+12345)
	_, _ = rand.Read(data)
	c.Send(`<iq type='get' id='slot' to='upload.localhost'><request xmlns='urn:xmpp:http:upload:0' filename='random.bin' size='%d' content-type='application/octet-stream'/></iq>`, len(data))
	res := c.Await("slot", func(el *wire.Element) bool { return el.ID() == "slot" })
	slot := res.Child("slot", upload.NS)
	if res.Type() != "result" || slot == nil {
		t.Fatalf("slot: %s", res)
	}
	put, get := slot.Child("put", "").Attr("url"), slot.Child("get", "").Attr("url")
	if !strings.HasPrefix(put, urlB+upload.Prefix) {
		t.Fatalf("put URL %s is not node B's", put)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, put, bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT to node B: %s", resp.Status)
	}

	for _, base := range []string{urlA, urlC} {
		u := base + strings.TrimPrefix(get, urlB)
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
			t.Fatalf("GET %s: %s, %d of %d bytes, %v", u, resp.Status, len(got), len(data), err)
		}
	}
	// A client resuming a download asks for the rest only.
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, urlC+strings.TrimPrefix(get, urlB), nil)
	req.Header.Set("Range", "bytes=1000000-")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, data[1000000:]) {
		t.Fatalf("ranged GET: %s, %d bytes, %v", resp.Status, len(got), err)
	}
}

// BenchmarkUpload100MB uploads a 100 MB file to a node on PostgreSQL and
// downloads it again, both through the HTTP listener, with the contents
// in the database and in a directory; it reports MB/s for each direction
// and the test process's peak RSS (the node and the client, which streams
// from a generator and to a hash: neither side holds the file). The peak
// is the process's: run one store at a time for it.
//
//	go test -run '^$' -bench 'Upload100MB/database' -benchtime 1x ./server/httpd/
//	go test -run '^$' -bench 'Upload100MB/directory' -benchtime 1x ./server/httpd/
func BenchmarkUpload100MB(b *testing.B) {
	for _, store := range []string{"database", "directory"} {
		b.Run(store, func(b *testing.B) { benchmarkUpload(b, store) })
	}
}

func benchmarkUpload(b *testing.B, store string) {
	const size = 100 << 20
	pg := pgtest.Start(b)
	addr := servertest.FreeAddr(b)
	cfg := servertest.DefaultConfig(b)
	cfg.Database.URL = pg.NewDatabase(b)
	cfg.HTTP.Listen = addr
	cfg.Upload.URL = "http://" + addr
	if store == "directory" {
		cfg.Upload.Store, cfg.Upload.Directory = store, b.TempDir()
	}
	n := servertest.RunServer(b, cfg, server.WithService(httpd.NewService()))
	servertest.CreateUser(b, n, "alice", "pw")
	c := servertest.Dial(b, n)
	c.Login("alice", "pw", "bench")
	var up, down time.Duration
	for i := 0; b.Loop(); i++ {
		c.Send(`<iq type='get' id='s%d' to='upload.localhost'><request xmlns='urn:xmpp:http:upload:0' filename='big.bin' size='%d' content-type='application/octet-stream'/></iq>`, i, size)
		res := c.Await("slot", func(el *wire.Element) bool { return el.ID() == fmt.Sprintf("s%d", i) })
		slot := res.Child("slot", upload.NS)
		if slot == nil {
			b.Fatalf("slot: %s", res)
		}
		start := time.Now()
		src := io.LimitReader(&pattern{}, size)
		req, _ := http.NewRequest(http.MethodPut, slot.Child("put", "").Attr("url"), src)
		req.ContentLength = size
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusCreated {
			b.Fatalf("PUT: %v %v", resp, err)
		}
		resp.Body.Close()
		up += time.Since(start)
		start = time.Now()
		resp, err = http.Get(slot.Child("get", "").Attr("url"))
		if err != nil {
			b.Fatal(err)
		}
		h := sha256.New()
		got, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || got != size {
			b.Fatalf("GET: %d bytes, %v", got, err)
		}
		down += time.Since(start)
		want := sha256.New()
		_, _ = io.Copy(want, io.LimitReader(&pattern{}, size))
		if !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
			b.Fatal("downloaded file differs")
		}
	}
	mb := float64(size) / (1 << 20) * float64(b.N)
	b.ReportMetric(mb/up.Seconds(), "upload-MB/s")
	b.ReportMetric(mb/down.Seconds(), "download-MB/s")
	b.ReportMetric(peakRSSMB(), "peak-RSS-MB")
}

// pattern is an endless, non-repeating-per-chunk byte stream.
type pattern struct{ n uint64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		p.n++
		b[i] = byte(p.n ^ p.n>>11 ^ p.n>>23)
	}
	return len(b), nil
}

// peakRSSMB reads VmHWM, the process's peak resident set, in MiB.
func peakRSSMB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb float64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), &kb)
			return kb / 1024
		}
	}
	return 0
}
