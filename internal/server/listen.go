package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrInput marks bad listen options: nothing was started.
var ErrInput = errors.New("invalid input")

// ListenOptions say where and how the server listens.
type ListenOptions struct {
	Addr string
	// CertFile and KeyFile are a PEM certificate (chain) and key, read
	// again whenever either file changes.
	CertFile, KeyFile string
	// SelfSigned makes (once, then reuses) a certificate for the loopback
	// addresses and this host, kept in Dir.
	SelfSigned bool
	Dir        string
	// InsecureHTTP serves plain HTTP; allowed on loopback addresses only.
	InsecureHTTP bool
}

// Listening is what a started listener tells its caller.
type Listening struct {
	Addr   string
	Scheme string
	// Fingerprint is the SHA-256 of the certificate (DER), as
	// AB:CD:..., for clients to pin a self-signed certificate.
	Fingerprint string
}

// Check validates the options without touching anything.
func (o ListenOptions) Check() error {
	modes := 0
	if o.CertFile != "" || o.KeyFile != "" {
		modes++
		if o.CertFile == "" || o.KeyFile == "" {
			return fmt.Errorf("%w: --tls-cert and --tls-key go together: give both files", ErrInput)
		}
	}
	if o.SelfSigned {
		modes++
	}
	if o.InsecureHTTP {
		modes++
	}
	switch {
	case modes == 0:
		return fmt.Errorf("%w: choose how to serve: --tls-cert FILE --tls-key FILE, or --tls-self-signed to try it out, or --insecure-http on a loopback address", ErrInput)
	case modes > 1:
		return fmt.Errorf("%w: --tls-cert/--tls-key, --tls-self-signed and --insecure-http exclude each other; choose one", ErrInput)
	}
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return fmt.Errorf("%w: --addr %q: want HOST:PORT, for example 127.0.0.1:8443", ErrInput, o.Addr)
	}
	if o.InsecureHTTP && !loopback(host) {
		return fmt.Errorf("%w: --insecure-http serves tokens in clear text, so only on a loopback address (127.0.0.1, ::1, localhost), not %q; use TLS (--tls-cert/--tls-key or --tls-self-signed) elsewhere", ErrInput, o.Addr)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TLSConfig is the server's TLS configuration: TLS 1.2 at least (1.0 and
// 1.1 handshakes are refused), the certificate from getCert.
func TLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCert}
}

// Serve listens as o says and serves h until ctx ends, then shuts the HTTP
// server down (in-flight requests get 10 seconds). ready is called once
// the listener is up.
func Serve(ctx context.Context, o ListenOptions, h http.Handler, log *slog.Logger, ready func(Listening)) error {
	if err := o.Check(); err != nil {
		return err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	info := Listening{Scheme: "http"}
	if !o.InsecureHTTP {
		certFile, keyFile := o.CertFile, o.KeyFile
		if o.SelfSigned {
			var err error
			if certFile, keyFile, err = SelfSigned(o.Dir, o.Addr); err != nil {
				return err
			}
		}
		rl, err := NewCertReloader(certFile, keyFile, log)
		if err != nil {
			return err
		}
		hs.TLSConfig = TLSConfig(rl.GetCertificate)
		info.Scheme, info.Fingerprint = "https", rl.Fingerprint()
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.Addr, err)
	}
	info.Addr = ln.Addr().String()
	if hs.TLSConfig != nil {
		ln = tls.NewListener(ln, hs.TLSConfig)
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	if ready != nil {
		ready(info)
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}

// CertReloader serves a certificate from files and reads them again when
// either one's modification time changes, so a renewed certificate (certbot,
// cert-manager) takes effect without a restart. A pair that fails to load
// keeps the previous one serving.
type CertReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	mu                sync.Mutex
	cert              *tls.Certificate
	certMod, keyMod   time.Time
}

// NewCertReloader loads the pair once; it must load.
func NewCertReloader(certFile, keyFile string, log *slog.Logger) (*CertReloader, error) {
	r := &CertReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}
	return r, nil
}

func (r *CertReloader) load() error {
	cs, err := os.Stat(r.certFile)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	ks, err := os.Stat(r.keyFile)
	if err != nil {
		return fmt.Errorf("TLS key: %w", err)
	}
	if r.cert != nil && cs.ModTime().Equal(r.certMod) && ks.ModTime().Equal(r.keyMod) {
		return nil
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	if r.cert != nil {
		r.log.Info("TLS certificate reloaded", "cert", r.certFile, "fingerprint", fingerprint(c.Certificate[0]))
	}
	r.cert, r.certMod, r.keyMod = &c, cs.ModTime(), ks.ModTime()
	return nil
}

// GetCertificate is tls.Config.GetCertificate.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(); err != nil {
		r.log.Warn("TLS certificate not reloaded; the previous one keeps serving", "err", err)
	}
	return r.cert, nil
}

// Fingerprint is the current certificate's SHA-256.
func (r *CertReloader) Fingerprint() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fingerprint(r.cert.Certificate[0])
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// Fingerprint formats the SHA-256 of a DER certificate as AB:CD:...
func Fingerprint(der []byte) string { return fingerprint(der) }

// SelfSigned returns the files of a self-signed certificate in dir, made
// on first use for localhost, 127.0.0.1, ::1, this host's name and addr's
// host, valid one year; it is made anew when it expires within a week.
func SelfSigned(dir, addr string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, "self-signed.crt"), filepath.Join(dir, "self-signed.key")
	if c, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil && time.Until(leaf.NotAfter) > 7*24*time.Hour {
			return certFile, keyFile, nil
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "gantry server (self-signed)"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if ip == nil && host != "" && host != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
