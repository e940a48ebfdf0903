package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// The admin API changes routes, switches and drains releases and turns
// maintenance on and off. It is HTTP/JSON on a Unix socket next to the
// state (mode 0600): who may write the socket may change the routes, with
// no token to create, store or leak, and it is reachable only from the
// proxy's own host, where the deploy engine drives the containers. (A
// remote gantry reaches it through ssh, which forwards Unix sockets.)
//
//	GET  /v1/state        the routes, active releases, maintenance, requests in flight
//	PUT  /v1/routes       {"routes": [...], "envs": [...]}: replace these environments' routes
//	POST /v1/switch       SwitchRequest: move a route's traffic to an upstream
//	POST /v1/drain        DrainRequest: wait for an old upstream's requests, cut them at the timeout
//	PUT  /v1/tasks        TasksRequest: the running tasks of a swarm service's route
//	PUT  /v1/maintenance  {"env": "staging", "on": true, "message": "..."}
//	POST /v1/canary          CanaryRequest: start a canary, or change its weight, step, stickiness
//	POST /v1/canary/promote  {"env", "service"}: the canary takes all the traffic
//	POST /v1/canary/abort    {"env", "service", "reason"}: all the traffic back to the stable release
//	GET  /v1/canary?env=E&service=S  CanaryStats of the current step (404: no canary)
func (p *Proxy) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/state", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.State())
	})
	mux.Handle("PUT /v1/routes", call(func(_ context.Context, req SetRoutesRequest) (Status, error) {
		if err := p.SetRoutes(req.Routes, req.Envs); err != nil {
			return Status{}, err
		}
		return p.State(), nil
	}))
	mux.Handle("POST /v1/switch", call(p.Switch))
	mux.Handle("POST /v1/drain", call(p.Drain))
	mux.Handle("PUT /v1/tasks", call(p.SetTasks))
	mux.Handle("PUT /v1/maintenance", call(func(_ context.Context, req MaintenanceRequest) (Status, error) {
		if err := p.SetMaintenance(req.Env, req.On, req.Message); err != nil {
			return Status{}, err
		}
		return p.State(), nil
	}))
	mux.Handle("POST /v1/canary", call(p.SetCanary))
	mux.Handle("POST /v1/canary/promote", call(func(ctx context.Context, req CanaryAction) (SwitchResult, error) {
		return p.PromoteCanary(ctx, req.Env, req.Service)
	}))
	mux.Handle("POST /v1/canary/abort", call(func(ctx context.Context, req CanaryAction) (SwitchResult, error) {
		return p.AbortCanary(ctx, req.Env, req.Service, req.Reason)
	}))
	mux.HandleFunc("GET /v1/canary", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		res, err := p.CanaryStats(q.Get("env"), q.Get("service"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	return mux
}

// call is an endpoint taking a JSON request and answering fn's result, or
// its error with the status its kind says.
func call[Req, Res any](fn func(context.Context, Req) (Res, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if !readJSON(w, r, &req) {
			return
		}
		res, err := fn(r.Context(), req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// SetRoutesRequest replaces the routes of Envs (all when empty).
type SetRoutesRequest struct {
	Routes []Route  `json:"routes"`
	Envs   []string `json:"envs,omitempty"`
}

// MaintenanceRequest turns an environment's maintenance page on or off.
type MaintenanceRequest struct {
	Env     string `json:"env"`
	On      bool   `json:"on"`
	Message string `json:"message,omitempty"`
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "the request is not valid JSON for this endpoint: " + err.Error()})
		return false
	}
	return true
}

type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrInput):
		status = http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		status = http.StatusNotFound
	}
	writeJSON(w, status, apiError{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// ListenAdmin listens on the admin socket at path, mode 0600. A socket
// file left by a proxy that is gone is replaced; one a running proxy
// answers on is an error.
func ListenAdmin(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: another gantry proxy answers on %s; stop it, or give this one another --state-dir", ErrInput, path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return ln, nil
}

// Client talks to a proxy's admin socket: what the deploy engine and
// `gantry proxy status|switch|maintenance` use.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client of the admin socket at path.
func NewClient(socket string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// Socket is the admin socket's path.
func (c *Client) Socket() string { return c.socket }

// ErrNoProxy means no proxy answers on the admin socket.
var ErrNoProxy = errors.New("no gantry proxy answers")

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://gantry-proxy"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w on %s (%v); start it with `gantry proxy` (or `gantry server --proxy`) using the same state directory", ErrNoProxy, c.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("gantry proxy on %s: %w", c.socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e apiError
		json.Unmarshal(b, &e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		switch resp.StatusCode {
		case http.StatusBadRequest:
			return fmt.Errorf("gantry proxy: %w: %s", ErrInput, trimSentinel(e.Error))
		case http.StatusNotFound:
			return fmt.Errorf("gantry proxy: %w: %s", ErrNotFound, trimSentinel(e.Error))
		}
		return fmt.Errorf("gantry proxy: %s", e.Error)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func trimSentinel(s string) string {
	for _, p := range []string{ErrInput.Error() + ": ", ErrNotFound.Error() + ": "} {
		if len(s) > len(p) && s[:len(p)] == p {
			return s[len(p):]
		}
	}
	return s
}

// State returns the proxy's routes, releases, maintenance and requests in
// flight.
func (c *Client) State(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/v1/state", nil, &s)
	return s, err
}

// SetRoutes replaces the routes of envs (all when nil).
func (c *Client) SetRoutes(ctx context.Context, routes []Route, envs []string) error {
	return c.do(ctx, http.MethodPut, "/v1/routes", SetRoutesRequest{Routes: routes, Envs: envs}, nil)
}

// Switch moves a route's traffic to an upstream.
func (c *Client) Switch(ctx context.Context, req SwitchRequest) (SwitchResult, error) {
	var res SwitchResult
	err := c.do(ctx, http.MethodPost, "/v1/switch", req, &res)
	return res, err
}

// Drain waits for an old upstream's requests to finish.
func (c *Client) Drain(ctx context.Context, req DrainRequest) (DrainResult, error) {
	var res DrainResult
	err := c.do(ctx, http.MethodPost, "/v1/drain", req, &res)
	return res, err
}

// SetTasks sets the running tasks of a swarm service's route.
func (c *Client) SetTasks(ctx context.Context, req TasksRequest) (TasksResult, error) {
	var res TasksResult
	err := c.do(ctx, http.MethodPut, "/v1/tasks", req, &res)
	return res, err
}

// SetMaintenance turns an environment's maintenance page on or off.
func (c *Client) SetMaintenance(ctx context.Context, env string, on bool, message string) error {
	return c.do(ctx, http.MethodPut, "/v1/maintenance", MaintenanceRequest{Env: env, On: on, Message: message}, nil)
}

// SetCanary starts a canary on a route, or changes its weight, step or
// stickiness.
func (c *Client) SetCanary(ctx context.Context, req CanaryRequest) (Route, error) {
	var res Route
	err := c.do(ctx, http.MethodPost, "/v1/canary", req, &res)
	return res, err
}

// PromoteCanary makes a route's canary its stable release.
func (c *Client) PromoteCanary(ctx context.Context, env, service string) (SwitchResult, error) {
	var res SwitchResult
	err := c.do(ctx, http.MethodPost, "/v1/canary/promote", CanaryAction{Env: env, Service: service}, &res)
	return res, err
}

// AbortCanary sends all of a route's traffic back to its stable release.
func (c *Client) AbortCanary(ctx context.Context, env, service, reason string) (SwitchResult, error) {
	var res SwitchResult
	err := c.do(ctx, http.MethodPost, "/v1/canary/abort", CanaryAction{Env: env, Service: service, Reason: reason}, &res)
	return res, err
}

// CanaryStats are both releases' statistics over a canary's current step.
func (c *Client) CanaryStats(ctx context.Context, env, service string) (CanaryStats, error) {
	var res CanaryStats
	q := url.Values{"env": {env}, "service": {service}}
	err := c.do(ctx, http.MethodGet, "/v1/canary?"+q.Encode(), nil, &res)
	return res, err
}
