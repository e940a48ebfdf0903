package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/auth"
)

// Scope says which environment a route acts on, for tokens limited to
// environments.
type Scope int

// The scopes of a route.
const (
	// ScopeNone: the route is about no environment in particular.
	ScopeNone Scope = iota
	// ScopeEnv: the path's {env}.
	ScopeEnv
	// ScopeObject: the environment of the object the route names (a
	// deployment), checked by the handler once it has read the object.
	ScopeObject
	// ScopeFilter: the route lists several environments and shows only
	// those the token may see.
	ScopeFilter
)

func (s Scope) String() string {
	return [...]string{"none", "env", "object", "filter"}[s]
}

// Rule is who may call a route. Every route declares one; New refuses a
// table with a route that does not.
type Rule struct {
	// Public routes need no token (probes; /metrics when so configured).
	Public bool
	// Role is the least role a token needs.
	Role  auth.Role
	Scope Scope
}

// route is one entry of the router's table: the table is the router.
type route struct {
	Method string
	Path   string
	Rule   Rule
	// Action names the audit event of a state-changing route; routes
	// without one change nothing.
	Action string
	handle func(*call) (int, any, error)
}

// Route describes a route of the table, for tests and documentation.
type Route struct {
	Method string
	Path   string
	Rule   Rule
	Action string
}

// Routes lists the router's table.
func (s *Server) Routes() []Route {
	out := make([]Route, 0, len(s.routes))
	for _, r := range s.routes {
		out = append(out, Route{r.Method, r.Path, r.Rule, r.Action})
	}
	return out
}

// MaxBody bounds request bodies.
const MaxBody = 1 << 20

func checkTable(rs []*route) error {
	seen := map[string]bool{}
	for _, r := range rs {
		key := r.Method + " " + r.Path
		switch {
		case seen[key]:
			return fmt.Errorf("route %s declared twice", key)
		case !r.Rule.Public && r.Rule.Role == "":
			return fmt.Errorf("route %s has no rule: declare Public or a Role", key)
		case r.Rule.Public && (r.Rule.Role != "" || r.Action != ""):
			return fmt.Errorf("route %s: a public route has no role and changes nothing", key)
		case r.Rule.Scope == ScopeEnv && !strings.Contains(r.Path, "{env}"):
			return fmt.Errorf("route %s: scope env needs {env} in the path", key)
		case r.Method != http.MethodGet && r.Action == "":
			return fmt.Errorf("route %s changes state and has no audit action", key)
		case r.handle == nil:
			return fmt.Errorf("route %s has no handler", key)
		}
		seen[key] = true
	}
	return nil
}

func (s *Server) buildMux() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.routes {
		mux.Handle(r.Method+" "+r.Path, s.wrap(r))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// No route: answer in JSON, as every other error, keeping the
		// status (404, or 405 with Allow) that the mux chose.
		rec := &statusOnly{h: w.Header()}
		mux.ServeHTTP(rec, r)
		reqID := requestID(r)
		w.Header().Set("X-Request-Id", reqID)
		w.Header().Del("X-Content-Type-Options")
		status := rec.status
		if status == 0 {
			status = http.StatusNotFound
		}
		code, msg := CodeNotFound, fmt.Sprintf("no API route %s; see /api/openapi.json", r.URL.Path)
		if status == http.StatusMethodNotAllowed {
			code, msg = CodeMethod, fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, w.Header().Get("Allow"))
		}
		s.m.requests.WithLabelValues("unmatched", r.Method, strconv.Itoa(status)).Inc()
		writeError(w, reqID, &Error{Status: status, Code: code, Message: msg})
	})
}

// statusOnly records the status a handler writes and drops its body.
type statusOnly struct {
	h      http.Header
	status int
}

func (s *statusOnly) Header() http.Header { return s.h }
func (s *statusOnly) WriteHeader(c int) {
	if s.status == 0 {
		s.status = c
	}
}
func (s *statusOnly) Write(b []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return len(b), nil
}

var reqIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestID is the client's X-Request-Id when it is sane, or a new one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); reqIDRE.MatchString(id) {
		return id
	}
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// call is one request on its way through a route.
type call struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	route *route
	id    *auth.Identity
	reqID string
	// env is the environment the request acts on, when known.
	env string
	// object and detail go into the audit event.
	object string
	detail map[string]string
	// raw: the handler wrote the response itself.
	raw bool
	// selfAudited: the handler's domain package wrote the audit event.
	selfAudited bool
}

func (c *call) ctx() context.Context { return c.r.Context() }

func (c *call) note(k, v string) {
	if c.detail == nil {
		c.detail = map[string]string{}
	}
	c.detail[k] = v
}

// checkEnv refuses a token limited to other environments.
func (c *call) checkEnv(env string) error {
	c.env = env
	if c.id != nil && !c.id.CanEnv(env) {
		return apiErr(http.StatusForbidden, CodeForbidden, "token %s is limited to %s; it may not act on %s", c.id.Name, strings.Join(c.id.Envs, ", "), env)
	}
	return nil
}

func (s *Server) wrap(rt *route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		c := &call{s: s, w: w, r: r, route: rt, reqID: requestID(r)}
		w.Header().Set("X-Request-Id", c.reqID)
		w.Header().Set("Cache-Control", "no-store")
		sw := &statusWriter{ResponseWriter: w}
		c.w = sw
		status, body, err := s.serve(c)
		switch {
		case err != nil:
			e := toAPIError(err)
			status = e.Status
			if e.Status >= 500 {
				s.log.Error("request failed", "route", rt.Path, "request_id", c.reqID, "err", err)
			}
			writeError(sw, c.reqID, e)
			c.note("error", e.Message)
		case c.raw:
			status = sw.code()
		default:
			if e, ok := body.(encoded); ok {
				e.write(sw, status)
				break
			}
			writeJSON(sw, status, body)
		}
		s.m.requests.WithLabelValues(rt.Path, rt.Method, strconv.Itoa(status)).Inc()
		s.m.requestDuration.WithLabelValues(rt.Path, rt.Method).Observe(time.Since(start).Seconds())
		s.auditRequest(c, status)
	})
}

// serve authenticates, authorizes and runs the route's handler.
func (s *Server) serve(c *call) (int, any, error) {
	rt, r := c.route, c.r
	if !s.started.Load() && !rt.Rule.Public {
		return 0, nil, apiErr(http.StatusServiceUnavailable, CodeStarting, "gantry server is starting (recovering interrupted deployments); retry in a moment")
	}
	if !rt.Rule.Public {
		tok, ok := bearer(r)
		id, err := s.tokens.Authenticate(c.ctx(), tok)
		if !ok && tok == "" && r.Header.Get("Authorization") != "" {
			err = auth.ErrBadToken
		}
		if err != nil {
			reason := authReason(err)
			if reason == "" {
				return 0, nil, err
			}
			c.id = id // the name of an expired or revoked token, for the record
			c.note("reason", reason)
			s.m.authFailures.WithLabelValues(reason).Inc()
			msg := "this request needs a token: send Authorization: Bearer <token> (gantry token create makes one)"
			if reason != "no_token" {
				msg = "the token is not valid (unknown, wrong, expired or revoked); ask an admin for a new one"
			}
			return 0, nil, apiErr(http.StatusUnauthorized, CodeUnauthorized, "%s", msg)
		}
		c.id = id
		if !id.Role.AtLeast(rt.Rule.Role) {
			s.m.authFailures.WithLabelValues("role").Inc()
			c.note("required_role", string(rt.Rule.Role))
			return 0, nil, apiErr(http.StatusForbidden, CodeForbidden, "token %s has role %s; %s %s needs %s", id.Name, id.Role, rt.Method, rt.Path, rt.Rule.Role)
		}
		if rt.Rule.Scope == ScopeEnv {
			env := r.PathValue("env")
			c.object = "env/" + env
			if err := c.checkEnv(env); err != nil {
				s.m.authFailures.WithLabelValues("env").Inc()
				return 0, nil, err
			}
			if !s.knownEnv(env) {
				return 0, nil, apiErr(http.StatusNotFound, CodeNotFound, "environment %q is not in gantry.yaml (it has %s)", env, strings.Join(s.envs, ", "))
			}
		}
	}
	status, body, err := rt.handle(c)
	var ae *Error
	if errors.As(err, &ae) && ae.Status == http.StatusForbidden {
		s.m.authFailures.WithLabelValues("env").Inc()
	}
	return status, body, err
}

func (s *Server) knownEnv(env string) bool {
	for _, e := range s.envs {
		if e == env {
			return true
		}
	}
	return false
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

func authReason(err error) string {
	switch {
	case errors.Is(err, auth.ErrNoToken):
		return "no_token"
	case errors.Is(err, auth.ErrBadToken):
		return "invalid_token"
	case errors.Is(err, auth.ErrExpired):
		return "expired_token"
	case errors.Is(err, auth.ErrRevoked):
		return "revoked_token"
	}
	return ""
}

// auditRequest records state-changing requests, login failures and denied
// requests.
func (s *Server) auditRequest(c *call, status int) {
	if c.selfAudited {
		return
	}
	var outcome audit.Outcome
	switch {
	case status == http.StatusUnauthorized:
		outcome = audit.LoginFailed
	case status == http.StatusForbidden:
		outcome = audit.Denied
	case c.route.Action == "":
		return
	case status < 400:
		outcome = audit.OK
	default:
		outcome = audit.Failed
	}
	action := c.route.Action
	if action == "" {
		action = "read"
	}
	if outcome == audit.LoginFailed {
		action = "login"
	}
	ev := audit.Event{Action: action, Object: c.object, Outcome: outcome, RequestID: c.reqID, Client: c.r.RemoteAddr, Detail: c.detail}
	if ev.Object == "" {
		ev.Object = c.r.Method + " " + c.r.URL.Path
	}
	if ev.Detail == nil {
		ev.Detail = map[string]string{}
	}
	ev.Detail["status"] = strconv.Itoa(status)
	ev.Detail["route"] = c.route.Method + " " + c.route.Path
	if c.env != "" {
		ev.Detail["env"] = c.env
	}
	if c.id != nil {
		ev.Actor, ev.Role = c.id.Name, string(c.id.Role)
	}
	if outcome == audit.LoginFailed {
		single, due := s.logins.allow(c.r.RemoteAddr, c.detail["reason"], c.reqID)
		for _, d := range due {
			s.appendAudit(c.ctx(), d)
		}
		if !single {
			return
		}
	}
	s.appendAudit(c.ctx(), ev)
}

func (s *Server) appendAudit(ctx context.Context, ev audit.Event) {
	if _, err := s.audit.Append(ctx, ev); err != nil {
		s.log.Error("audit log write failed", "action", ev.Action, "err", err)
		return
	}
	s.m.auditEvents.WithLabelValues(string(ev.Outcome)).Inc()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(c int) {
	if w.status == 0 {
		w.status = c
	}
	w.ResponseWriter.WriteHeader(c)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// decode reads a JSON request body into dst: one object, no unknown
// fields, at most MaxBody bytes. An empty body is an empty object. It
// reads the whole body before anything is changed.
func (c *call) decode(dst any) error {
	if ct := c.r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return apiErr(http.StatusUnsupportedMediaType, CodeMediaType, "Content-Type %q: send application/json", ct)
		}
	}
	body := http.MaxBytesReader(c.w, c.r.Body, MaxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var big *http.MaxBytesError
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		return nil
	case errors.As(err, &big):
		return apiErr(http.StatusRequestEntityTooLarge, CodeTooLarge, "the request body is larger than %d bytes", MaxBody)
	case errors.As(err, &syn):
		return apiErr(http.StatusBadRequest, CodeBadRequest, "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return apiErr(http.StatusBadRequest, CodeBadRequest, "the body must be a JSON object, not %s", typ.Value)
		}
		e := apiErr(http.StatusBadRequest, CodeBadRequest, "field %q must be %s, not %s", field, jsonType(typ.Type.Kind().String()), typ.Value)
		e.Field = field
		return e
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		e := apiErr(http.StatusBadRequest, CodeUnknownField, "unknown field %q; see /api/openapi.json for this request's fields", field)
		e.Field = field
		return e
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apiErr(http.StatusBadRequest, CodeBadRequest, "malformed JSON: the body ends in the middle of a value")
	default:
		return apiErr(http.StatusBadRequest, CodeBadRequest, "malformed JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var big *http.MaxBytesError
		if errors.As(err, &big) {
			return apiErr(http.StatusRequestEntityTooLarge, CodeTooLarge, "the request body is larger than %d bytes", MaxBody)
		}
		return apiErr(http.StatusBadRequest, CodeBadRequest, "the body must hold one JSON object and nothing after it")
	}
	return nil
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "true or false"
	}
	if strings.HasPrefix(kind, "int") || strings.HasPrefix(kind, "uint") || strings.HasPrefix(kind, "float") {
		return "a number"
	}
	return kind
}

// queryInt reads an integer query parameter within [min, max].
func (c *call) queryInt(name string, def, min, max int) (int, error) {
	v := c.r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		e := apiErr(http.StatusBadRequest, CodeBadRequest, "query parameter %s=%q: want a whole number from %d to %d", name, v, min, max)
		e.Field = name
		return 0, e
	}
	return n, nil
}
