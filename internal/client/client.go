// Package client is the gantry CLI's side of gantry server's API: an HTTP
// client that authenticates with a token, trusts the server's certificate
// (the system's roots, a CA file, or a pinned SHA-256 fingerprint for a
// self-signed one), turns API errors into errors that carry the CLI's exit
// code, and follows a deploy to its end.
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
)

// ErrInput marks bad client settings.
var ErrInput = errors.New("invalid input")

// Options say how to reach a server.
type Options struct {
	// Server is the base URL: https://host:port (http:// on loopback only).
	Server string
	Token  string
	// CAFile is a PEM bundle to trust instead of the system's roots.
	CAFile string
	// Fingerprint pins the server's certificate by the SHA-256 of its DER
	// (hex, colons optional): for a self-signed certificate.
	Fingerprint string
	// Timeout bounds each request (default 30s).
	Timeout time.Duration
}

// Client talks to one gantry server.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// New checks the options and returns a client; it does not connect.
func New(o Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(o.Server, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("%w: server %q: want a URL like https://gantry.example.com:8443", ErrInput, o.Server)
	}
	if u.Scheme == "http" {
		ip := net.ParseIP(u.Hostname())
		if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("%w: server %q: plain http is for loopback addresses only (the token would cross the network in clear text); use https", ErrInput, o.Server)
		}
	}
	if o.Token == "" {
		return nil, fmt.Errorf("%w: no token for %s: set GANTRY_TOKEN, or add a context with gantry context add", ErrInput, o.Server)
	}
	if o.CAFile != "" && o.Fingerprint != "" {
		return nil, fmt.Errorf("%w: a CA file and a fingerprint exclude each other; choose one", ErrInput)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: CA file: %v", ErrInput, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrInput, o.CAFile)
		}
		tc.RootCAs = pool
	}
	if o.Fingerprint != "" {
		want, err := ParseFingerprint(o.Fingerprint)
		if err != nil {
			return nil, err
		}
		// The pinned certificate is trusted by its bytes; the chain and the
		// name are not checked, as for ssh host keys.
		tc.InsecureSkipVerify = true
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("the server sent no certificate")
			}
			got := sha256.Sum256(raw[0])
			if !bytes.Equal(got[:], want) {
				return fmt.Errorf("the server's certificate has fingerprint %s, not the pinned %s: a different server, or its certificate changed", FormatFingerprint(got[:]), FormatFingerprint(want))
			}
			return nil
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.Proxy = nil
	return &Client{base: u, token: o.Token, hc: &http.Client{Transport: tr, Timeout: o.Timeout}}, nil
}

// ParseFingerprint reads a SHA-256 fingerprint: 64 hex digits, colons and
// case as you like, an optional "SHA256:" prefix.
func ParseFingerprint(s string) ([]byte, error) {
	h := strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimPrefix(strings.TrimPrefix(s, "SHA256:"), "sha256:")))
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("%w: fingerprint %q: want the SHA-256 gantry server printed, 64 hex digits (AB:CD:...)", ErrInput, s)
	}
	return b, nil
}

// FormatFingerprint writes AB:CD:...
func FormatFingerprint(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02X", x)
	}
	return strings.Join(parts, ":")
}

// Server is the base URL.
func (c *Client) Server() string { return c.base.String() }

// APIError is an error answer of the server.
type APIError struct {
	Status    int    `json:"-"`
	Message   string `json:"error"`
	Code      string `json:"code"`
	RequestID string `json:"request_id"`
	Exit      int    `json:"exit_code"`
}

func (e *APIError) Error() string {
	msg := e.Message
	if e.RequestID != "" {
		msg += " (request " + e.RequestID + ")"
	}
	return msg
}

// ExitCode is the CLI exit code the server chose for the failure.
func (e *APIError) ExitCode() int {
	if e.Exit == 0 {
		return 1
	}
	return e.Exit
}

// UnreachableError says the server did not answer.
type UnreachableError struct {
	Server string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("gantry server %s does not answer: %v", e.Server, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// do sends a request; an answer of 400 or above is an *APIError unless its
// status is among also.
func (c *Client) do(ctx context.Context, method, path string, body any, also ...int) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &UnreachableError{Server: c.base.String(), Err: err}
	}
	if resp.StatusCode >= 400 && !slices.Contains(also, resp.StatusCode) {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
		}
		return nil, e
	}
	return resp, nil
}

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: the answer is not what gantry expects: %w", method, path, err)
	}
	return nil
}

// Get reads path into out.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	return c.call(ctx, http.MethodGet, path, nil, out)
}

// GetAllowing reads path into out also when the answer's status is one of
// also (the health view answers 503 with the view), and returns the status.
func (c *Client) GetAllowing(ctx context.Context, path string, out any, also ...int) (int, error) {
	resp, err := c.do(ctx, http.MethodGet, path, nil, also...)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: the answer is not what gantry expects: %w", path, err)
	}
	return resp.StatusCode, nil
}

// Post sends body to path and reads the answer into out.
func (c *Client) Post(ctx context.Context, path string, body, out any) error {
	return c.call(ctx, http.MethodPost, path, body, out)
}

// Delete deletes path and reads the answer into out.
func (c *Client) Delete(ctx context.Context, path string, out any) error {
	return c.call(ctx, http.MethodDelete, path, nil, out)
}

// Stream copies path's answer to w (for exports).
func (c *Client) Stream(ctx context.Context, path string, w io.Writer) error {
	hc := *c.hc
	hc.Timeout = 0
	cc := *c
	cc.hc = &hc
	resp, err := cc.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// Accepted is the server's answer to a deploy or rollback.
type Accepted struct {
	Deployment int64 `json:"deployment"`
	// Kind is the deployment's kind: a rollback asked of a deploy under
	// way answers with that deploy.
	Kind string `json:"kind"`
	URL  string `json:"url"`
}

// Deployment is a deployment as the server shows it.
type Deployment struct {
	store.Deployment
	Steps []store.Step `json:"steps"`
}

// Follow polls a started deployment until its state is final (and its
// watch window, if any, over), telling
// onStep about every step as it is recorded, and returns its result with
// the error the engine would have returned in local mode (deploy.ErrRolledBack,
// deploy.ErrFailed).
func (c *Client) Follow(ctx context.Context, a Accepted, onStep func(store.Step)) (*deploy.Result, error) {
	seen := 0
	for {
		var d Deployment
		if err := c.Get(ctx, a.URL, &d); err != nil {
			return nil, err
		}
		for ; seen < len(d.Steps); seen++ {
			if onStep != nil {
				onStep(d.Steps[seen])
			}
		}
		// A deploy in its watch window has succeeded, but its analysis may
		// still roll it back: followed to the verdict, as locally.
		if d.State.Terminal() && !deploy.Watching(&d.Deployment) {
			res := &deploy.Result{}
			if len(d.Result) > 0 && string(d.Result) != "{}" {
				if err := json.Unmarshal(d.Result, res); err != nil {
					return nil, fmt.Errorf("deployment %d: result: %w", d.ID, err)
				}
			} else {
				res = &deploy.Result{Deployment: d.ID, Project: d.Project, Env: d.Env, Release: d.Release, Kind: d.Kind, State: d.State, Reason: d.Reason}
			}
			switch d.State {
			case store.Succeeded:
				return res, nil
			case store.RolledBack:
				return res, fmt.Errorf("%w: %s", deploy.ErrRolledBack, d.Reason)
			default:
				return res, fmt.Errorf("%w: %s", deploy.ErrFailed, d.Reason)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped following deployment %d (it goes on in the server; see gantry history %s): %w", d.ID, d.Env, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
