package registry

import (
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestGCRemovesUnreferencedBlobs(t *testing.T) {
	root := t.TempDir()
	srv := testRegistry(t, Options{Root: root})
	c := &client{t: t, base: srv.URL}
	_, image, resp := c.pushImage("shop/web", "1.0.0", []byte("kept layer"))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push: %s", resp.Status)
	}
	orphan := c.pushBlob("shop/web", []byte("a blob no manifest references"))
	// A layer pushed and referenced by its sha512 digest only: distribution
	// stores it under sha256, and a collector unaware of that would sweep it.
	layer512 := []byte("layer named by sha512")
	d512 := c.pushBlob512("shop/api", layer512)
	cfgD := c.pushBlob("shop/api", []byte("{}"))
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":2},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`, cfgD, d512, len(layer512))
	if resp := c.do("PUT", "/v2/shop/api/manifests/2.0.0", "application/vnd.oci.image.manifest.v1+json", []byte(m)); resp.StatusCode != http.StatusCreated {
		t.Fatalf("push manifest with a sha512 layer: %s: %s", resp.Status, readBody(t, resp))
	}

	dry, err := GC(context.Background(), GCOptions{Root: root, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Removed) != 1 || dry.Removed[0] != orphan {
		t.Fatalf("dry run would remove %v, want only the orphan %s", dry.Removed, orphan)
	}
	if resp := c.do("HEAD", "/v2/shop/web/blobs/"+orphan.String(), "", nil); resp.StatusCode != 200 {
		t.Fatalf("dry run removed the orphan: HEAD %s", resp.Status)
	}

	res, err := GC(context.Background(), GCOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 1 || res.Removed[0] != orphan || res.LayerLinks != 1 {
		t.Fatalf("gc removed %v (%d layer links), want the orphan %s (1 link)", res.Removed, res.LayerLinks, orphan)
	}
	if resp := c.do("HEAD", "/v2/shop/web/blobs/"+orphan.String(), "", nil); resp.StatusCode != 404 {
		t.Errorf("orphan after gc: HEAD %s, want 404", resp.Status)
	}
	// Everything referenced is still there and whole.
	if resp := c.do("GET", "/v2/shop/web/manifests/"+image.String(), "", nil); resp.StatusCode != 200 {
		t.Errorf("image manifest after gc: %s", resp.Status)
	}
	resp = c.do("GET", "/v2/shop/api/blobs/"+d512.String(), "", nil)
	if body := readBody(t, resp); resp.StatusCode != 200 || body != string(layer512) {
		t.Errorf("sha512 layer after gc: %s %q", resp.Status, body)
	}
	again, err := GC(context.Background(), GCOptions{Root: root})
	if err != nil || len(again.Removed) != 0 {
		t.Errorf("second gc: removed %v, err %v; want nothing", again.Removed, err)
	}
}

func TestGCRefusesWhileServing(t *testing.T) {
	root := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ServeOptions{Options: Options{Root: root, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			Addr: "127.0.0.1:0", Ready: func(a string) { ready <- a }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("no server")
	}
	_, err := GC(context.Background(), GCOptions{Root: root})
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "registry server (pid") {
		t.Errorf("gc while serving: err = %v, want ErrBusy naming the server", err)
	}
	// A second server on the same root is refused too.
	err = Serve(context.Background(), ServeOptions{Options: Options{Root: root}, Addr: "127.0.0.1:0"})
	if !errors.Is(err, ErrBusy) {
		t.Errorf("second server on the root: err = %v, want ErrBusy", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := GC(context.Background(), GCOptions{Root: root}); err != nil {
		t.Errorf("gc after the server stopped: %v", err)
	}
}

func TestServeRefusesOpenNetworkAddress(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		users  bool
		open   bool
		wantOK bool
	}{
		{"127.0.0.1:0", false, false, true},
		{"localhost:0", false, false, true},
		{"[::1]:0", false, false, true},
		{"0.0.0.0:5000", false, false, false},
		{":5000", false, false, false},
		{"192.0.2.1:5000", false, false, false},
		{"0.0.0.0:5000", true, false, true},
		{"0.0.0.0:5000", false, true, true},
		{"no-port", false, false, false},
	} {
		err := checkAddr(tc.addr, tc.users, tc.open)
		if (err == nil) != tc.wantOK {
			t.Errorf("checkAddr(%q, users=%v, open=%v) = %v", tc.addr, tc.users, tc.open, err)
		}
	}
}

// pushBlob512 uploads content verified against its sha512 digest.
func (c *client) pushBlob512(repo string, content []byte) digest.Digest {
	c.t.Helper()
	d := digest.Digest(fmt.Sprintf("sha512:%x", sha512.Sum512(content)))
	resp := c.do("POST", "/v2/"+repo+"/blobs/uploads/", "", nil)
	loc := strings.TrimPrefix(resp.Header.Get("Location"), c.base)
	resp = c.do("PUT", loc+"&digest="+d.String(), "application/octet-stream", content)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != d.String() {
		c.t.Fatalf("sha512 upload: %s, Docker-Content-Digest %q", resp.Status, resp.Header.Get("Docker-Content-Digest"))
	}
	return d
}
