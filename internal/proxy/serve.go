package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ServeOptions say where the proxy listens.
type ServeOptions struct {
	// Listen is the plain HTTP address: HTTP/1.1, and HTTP/2 with prior
	// knowledge (h2c). Empty: none.
	Listen string
	// TLSListen is the HTTPS address (HTTP/1.1 and HTTP/2 by ALPN), with
	// certificates from GetCertificate. Empty: none.
	TLSListen      string
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// AdminSocket is the admin API's Unix socket. Empty: none.
	AdminSocket string
	// ShutdownTimeout is how long requests in flight may finish when ctx
	// ends (default: the drain timeout).
	ShutdownTimeout time.Duration
}

// Listening is where a started proxy listens.
type Listening struct {
	HTTP  string `json:"http,omitempty"`
	HTTPS string `json:"https,omitempty"`
	Admin string `json:"admin,omitempty"`
}

// Serve listens as o says and serves until ctx ends; then requests in
// flight get the shutdown timeout to finish, and upgraded connections are
// closed. ready is called once every listener is up.
func (p *Proxy) Serve(ctx context.Context, o ServeOptions, ready func(Listening)) error {
	if o.Listen == "" && o.TLSListen == "" {
		return fmt.Errorf("%w: the proxy needs an address to listen on (--listen or --tls-listen)", ErrInput)
	}
	if o.TLSListen != "" && o.GetCertificate == nil {
		return fmt.Errorf("%w: HTTPS needs a certificate: give --tls-cert and --tls-key", ErrInput)
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = p.opts.DrainTimeout
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          p.opts.errorLog,
		Protocols:         protos,
	}
	var lns []net.Listener
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	var info Listening
	errc := make(chan error, 4)
	if o.Listen != "" {
		ln, err := net.Listen("tcp", o.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", o.Listen, err)
		}
		lns = append(lns, ln)
		info.HTTP = ln.Addr().String()
	}
	if o.TLSListen != "" {
		ln, err := net.Listen("tcp", o.TLSListen)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen on %s: %w", o.TLSListen, err)
		}
		lns = append(lns, ln)
		info.HTTPS = ln.Addr().String()
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: o.GetCertificate}
	}
	var admin *http.Server
	if o.AdminSocket != "" {
		ln, err := ListenAdmin(o.AdminSocket)
		if err != nil {
			closeAll()
			return err
		}
		info.Admin = o.AdminSocket
		admin = &http.Server{Handler: p.AdminHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: p.opts.errorLog}
		go func() { errc <- admin.Serve(ln) }()
	}
	var h1 *h1Server
	for _, ln := range lns {
		if info.HTTPS != "" && ln.Addr().String() == info.HTTPS {
			go func() { errc <- srv.ServeTLS(ln, "", "") }()
		} else {
			// The proxy's own loop serves plain HTTP/1.1 requests and
			// hands every other connection to srv.
			h1 = newH1Server(p, srv, ln)
			go func() { errc <- srv.Serve(h1.handoff) }()
			go func() { errc <- h1.serve() }()
		}
	}
	if ready != nil {
		ready(info)
	}
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer cancel()
	p.cutUpgrades()
	herrc := make(chan error, 1)
	if h1 != nil {
		go func() { herrc <- h1.shutdown(sctx) }()
	} else {
		herrc <- nil
	}
	serr := srv.Shutdown(sctx)
	herr := <-herrc
	if admin != nil {
		admin.Shutdown(sctx)
	}
	p.Close()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return cmp.Or(serr, herr)
}

// cutUpgrades closes every upgraded connection: http.Server.Shutdown does
// not wait for hijacked ones.
func (p *Proxy) cutUpgrades() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.backends {
		b.cutUpgraded()
	}
}
