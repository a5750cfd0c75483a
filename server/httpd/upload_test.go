package httpd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins/upload"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
	"github.com/aviary-im/aviary/wire"
)

// TestUploadAcrossCluster: two real nodes on one PostgreSQL and a
// Hazelcast member, each with its HTTP listener as upload.url. A user on
// node B finds the upload service, gets a slot, PUTs a file to node B,
// and the file is downloaded whole from node A, which never saw the
// upload.
func TestUploadAcrossCluster(t *testing.T) {
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
		}), "http://" + addr
	}
	a, urlA := start("node-a")
	b, urlB := start("node-b")
	servertest.WaitClustered(t, a.c, b.c)
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

	fromA := urlA + strings.TrimPrefix(get, urlB)
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, fromA, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("GET from node A: %s, %d of %d bytes, %v", resp.Status, len(got), len(data), err)
	}
}
