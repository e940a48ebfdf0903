package server

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveTLS starts Serve with a self-signed certificate on a free loopback
// port and returns the address and fingerprint.
func serveTLS(t *testing.T, o ListenOptions) Listening {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Listening, 1)
	errc := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	go func() { errc <- Serve(ctx, o, h, slog.New(slog.DiscardHandler), func(l Listening) { ready <- l }) }()
	t.Cleanup(func() {
		cancel()
		<-errc
	})
	select {
	case l := <-ready:
		return l
	case err := <-errc:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	return Listening{}
}

func handshake(addr string, min, max uint16) (*tls.ConnectionState, error) {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: min, MaxVersion: max})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st := c.ConnectionState()
	return &st, nil
}

func TestTLSRefusesOldVersions(t *testing.T) {
	if TLSConfig(nil).MinVersion != tls.VersionTLS12 {
		t.Fatal("the server's TLS configuration allows versions below 1.2")
	}
	l := serveTLS(t, ListenOptions{Addr: "127.0.0.1:0", SelfSigned: true, Dir: t.TempDir()})
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		if _, err := handshake(l.Addr, v, v); err == nil {
			t.Errorf("a %s handshake was accepted", tls.VersionName(v))
		} else if !strings.Contains(err.Error(), "protocol version") {
			t.Errorf("%s refused, but not for its version: %v", tls.VersionName(v), err)
		}
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		st, err := handshake(l.Addr, v, v)
		if err != nil {
			t.Errorf("%s: %v", tls.VersionName(v), err)
			continue
		}
		if Fingerprint(st.PeerCertificates[0].Raw) != l.Fingerprint {
			t.Errorf("%s: the certificate served is not the one whose fingerprint was printed", tls.VersionName(v))
		}
	}
	// A client pinning the printed fingerprint verifies the self-signed
	// certificate; the name is in it.
	st, err := handshake(l.Addr, tls.VersionTLS12, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf := st.PeerCertificates[0]
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("self-signed certificate: %v", err)
	}
}

func TestSelfSignedIsKept(t *testing.T) {
	dir := t.TempDir()
	c1, k1, err := SelfSigned(dir, "127.0.0.1:8443")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(c1)
	c2, _, err := SelfSigned(dir, "127.0.0.1:8443")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(c2)
	if string(a) != string(b) {
		t.Error("a second start made a new certificate: pinned fingerprints would break")
	}
	if fi, _ := os.Stat(k1); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", fi.Mode().Perm())
	}
}

func TestCertificateReloadedOnChange(t *testing.T) {
	dir := t.TempDir()
	certA, keyA, err := SelfSigned(filepath.Join(dir, "a"), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	certB, keyB, err := SelfSigned(filepath.Join(dir, "b"), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	install := func(c, k string, at time.Time) {
		for src, dst := range map[string]string{c: cert, k: key} {
			b, _ := os.ReadFile(src)
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(dst, at, at)
		}
	}
	fp := func(path string) string {
		b, _ := os.ReadFile(path)
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s holds no PEM", path)
		}
		return Fingerprint(blk.Bytes)
	}
	now := time.Now()
	install(certA, keyA, now.Add(-time.Hour))
	l := serveTLS(t, ListenOptions{Addr: "127.0.0.1:0", CertFile: cert, KeyFile: key})
	served := func() string {
		st, err := handshake(l.Addr, tls.VersionTLS12, 0)
		if err != nil {
			t.Fatal(err)
		}
		return Fingerprint(st.PeerCertificates[0].Raw)
	}
	if got := served(); got != fp(certA) || l.Fingerprint != fp(certA) {
		t.Fatalf("serving %s, want A %s", got, fp(certA))
	}
	install(certB, keyB, now)
	if got := served(); got != fp(certB) {
		t.Fatalf("after the files changed: serving %s, want B %s", got, fp(certB))
	}
	// A broken pair keeps the last good certificate serving.
	os.WriteFile(cert, []byte("not a certificate"), 0o600)
	os.Chtimes(cert, now.Add(time.Hour), now.Add(time.Hour))
	if got := served(); got != fp(certB) {
		t.Fatalf("after a broken write: serving %s, want B", got)
	}
}

func TestListenOptionsChecked(t *testing.T) {
	for _, o := range []ListenOptions{
		{Addr: "127.0.0.1:8443"},
		{Addr: "127.0.0.1:8443", CertFile: "c"},
		{Addr: "127.0.0.1:8443", SelfSigned: true, InsecureHTTP: true},
		{Addr: "0.0.0.0:8080", InsecureHTTP: true},
		{Addr: ":8080", InsecureHTTP: true},
		{Addr: "192.168.1.10:8080", InsecureHTTP: true},
		{Addr: "nope", SelfSigned: true},
	} {
		if err := o.Check(); !errors.Is(err, ErrInput) {
			t.Errorf("%+v: %v", o, err)
		}
	}
	for _, o := range []ListenOptions{
		{Addr: "127.0.0.1:8080", InsecureHTTP: true},
		{Addr: "[::1]:8080", InsecureHTTP: true},
		{Addr: "localhost:8080", InsecureHTTP: true},
		{Addr: "0.0.0.0:8443", SelfSigned: true},
	} {
		if err := o.Check(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
}
