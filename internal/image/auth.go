package image

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/gantryhq/gantry/internal/config"
)

// PushOptionsFor are the push options of gantry.yaml's registry section:
// which tags never move, and the credentials it names (the password from
// the environment variable password_env).
func PushOptionsFor(r config.Registry) PushOptions {
	o := PushOptions{Immutable: r.Immutable, Username: r.Username}
	if r.PasswordEnv != "" {
		o.Password = os.Getenv(r.PasswordEnv)
	}
	return o
}

// loopback reports whether a registry host (with an optional port) is on
// this machine: the only registries gantry talks to over plain HTTP, as the
// Docker engine does.
func loopback(host string) bool {
	h := host
	if sh, _, err := net.SplitHostPort(host); err == nil {
		h = sh
	}
	h = strings.Trim(h, "[]")
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func nameOpts(s string) []name.Option {
	host, _, _ := strings.Cut(s, "/")
	if loopback(host) {
		return []name.Option{name.WeakValidation, name.Insecure}
	}
	return []name.Option{name.WeakValidation}
}

func parseRepo(s string) (name.Repository, error) {
	r, err := name.NewRepository(s, nameOpts(s)...)
	if err != nil {
		return name.Repository{}, inputErr("repository %q: %v; write it like ghcr.io/acme/web or 127.0.0.1:5000/shop/web", s, err)
	}
	return r, nil
}

func parseRef(s string) (name.Reference, error) {
	r, err := name.ParseReference(s, nameOpts(s)...)
	if err != nil {
		return nil, inputErr("image reference %q: %v; write it like ghcr.io/acme/web:1.0.0 or 127.0.0.1:5000/shop/web@sha256:...", s, err)
	}
	return r, nil
}

// githubKeychain gives GITHUB_TOKEN for ghcr.io, as GitHub Actions provide it.
type githubKeychain struct{}

func (githubKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	tok := os.Getenv("GITHUB_TOKEN")
	if r.RegistryStr() != "ghcr.io" || tok == "" {
		return authn.Anonymous, nil
	}
	user := os.Getenv("GITHUB_ACTOR")
	if user == "" {
		user = "gantry"
	}
	return &authn.Basic{Username: user, Password: tok}, nil
}

// keychain resolves credentials: those given, else the Docker config and
// its credential helpers, else GITHUB_TOKEN for ghcr.io.
func keychain(opts PushOptions) authn.Keychain {
	if opts.Username != "" || opts.Password != "" {
		return staticKeychain{&authn.Basic{Username: opts.Username, Password: opts.Password}}
	}
	return authn.NewMultiKeychain(authn.DefaultKeychain, githubKeychain{})
}

type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

// Credentials are the username and password gantry would use for repo (for
// example to let the Docker engine pull what was pushed). Both are empty
// when no credentials are known: the registry is used anonymously.
func Credentials(repo string, opts PushOptions) (username, password string, err error) {
	r, err := parseRepo(repo)
	if err != nil {
		return "", "", err
	}
	a, err := keychain(opts).Resolve(r)
	if err != nil {
		return "", "", fmt.Errorf("credentials for %s: %w", r.RegistryStr(), err)
	}
	cfg, err := a.Authorization()
	if err != nil {
		return "", "", fmt.Errorf("credentials for %s: %w", r.RegistryStr(), err)
	}
	if cfg.IdentityToken != "" && cfg.Password == "" {
		return "<token>", cfg.IdentityToken, nil
	}
	return cfg.Username, cfg.Password, nil
}

// anonymous reports whether no credentials are known for the registry.
func anonymous(reg name.Registry, opts PushOptions) bool {
	a, err := keychain(opts).Resolve(reg)
	return err == nil && a == authn.Anonymous
}

// remoteOptions are go-containerregistry's options for a registry.
func remoteOptions(ctx context.Context, registry string, opts PushOptions) ([]remote.Option, error) {
	rt := opts.Transport
	if rt == nil {
		rt = remote.DefaultTransport
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(keychain(opts)),
		remote.WithTransport(loopbackHTTPOnly{rt}),
		remote.WithJobs(jobs),
		remote.WithUserAgent("gantry"),
	}, nil
}

// loopbackHTTPOnly refuses plain HTTP to anything but this machine.
// go-containerregistry also falls back to HTTP for private-range
// addresses (10/8, 192.168/16); gantry never sends credentials or images
// unencrypted off the machine.
type loopbackHTTPOnly struct{ rt http.RoundTripper }

func (l loopbackHTTPOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !loopback(req.URL.Host) {
		return nil, fmt.Errorf("plain HTTP to %s refused: gantry speaks plain HTTP only to registries on 127.0.0.1 or localhost", req.URL.Host)
	}
	return l.rt.RoundTrip(req)
}

// registryErr turns go-containerregistry's errors about a registry into
// errors that say what to check.
func registryErr(registry string, err error) error {
	return registryErrOpts(registry, err, PushOptions{})
}

func registryErrOpts(registry string, err error, opts PushOptions) error {
	if err == nil {
		return nil
	}
	var dns *net.DNSError
	var terr *transport.Error
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	var rerr tls.RecordHeaderError
	switch {
	case errors.As(err, &dns):
		return fmt.Errorf("%w: registry host %s: no such host (%s cannot be resolved); check the registry in gantry.yaml (registry.url, or the service's image) for a typo, and that this machine's DNS knows the host", ErrUnreachable, registry, dns.Name)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: registry %s refused the connection: nothing listens on that port; check the host and port in gantry.yaml, and that the registry is running (for the embedded one: gantry registry serve)", ErrUnreachable, registry)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Errorf("%w: registry %s: no route to the host; check the host in gantry.yaml and this machine's network", ErrUnreachable, registry)
	case errors.As(err, &rerr), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%w: registry %s answers in plain HTTP; gantry speaks plain HTTP only to registries on 127.0.0.1 or localhost, so put TLS in front of it (%v)", ErrUnreachable, registry, err)
	case errors.As(err, &uerr), errors.As(err, &herr):
		return fmt.Errorf("%w: registry %s: its TLS certificate is not trusted (%v); add its CA to the system's certificates", ErrUnreachable, registry, err)
	case errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden):
		how := "set registry.username and registry.password_env in gantry.yaml, or run `docker login " + registry + "`"
		if registry == "ghcr.io" {
			how += ", or set GITHUB_TOKEN (a token with write:packages)"
		}
		what := "refused the credentials"
		if opts.Username != "" || opts.Password != "" {
			what = fmt.Sprintf("refused the credentials of user %q", opts.Username)
		} else if reg, err := name.NewRegistry(registry, nameOpts(registry)...); err == nil && anonymous(reg, opts) {
			what = "needs credentials, and gantry found none for it (none given, none in the Docker config, no GITHUB_TOKEN for ghcr.io)"
		}
		status := "401 unauthorized"
		if terr.StatusCode == http.StatusForbidden {
			status = "403 forbidden: the user may lack push access to the repository"
		}
		return fmt.Errorf("%w: registry %s %s (%s); %s", ErrUnauthorized, registry, what, status, how)
	}
	if errors.As(err, &terr) && len(terr.Errors) > 0 && terr.StatusCode != http.StatusUnauthorized {
		// The registry said why (an immutable tag, a bad manifest): its
		// messages, without the structured detail that would print as a Go map.
		var msgs []string
		for _, d := range terr.Errors {
			msgs = append(msgs, string(d.Code)+": "+d.Message)
		}
		return fmt.Errorf("registry %s refused it (%d %s): %s", registry, terr.StatusCode, http.StatusText(terr.StatusCode), strings.Join(msgs, "; "))
	}
	var oerr *net.OpError
	if errors.As(err, &oerr) {
		return fmt.Errorf("%w: registry %s: %v; check the host and port in gantry.yaml and that the registry is running", ErrUnreachable, registry, oerr)
	}
	return err
}
