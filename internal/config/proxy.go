package config

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"go.yaml.in/yaml/v3"
)

// StrategyBlueGreen is the strategy of a service with a route: its new
// container starts beside the old one and the proxy switches traffic.
const StrategyBlueGreen Strategy = "blue-green"

// Defaults of the proxy section.
const (
	DefaultProxyListen       = ":80"
	DefaultProxyTLSListen    = ":443"
	DefaultProxyMaxBody      = 10 << 20 // like a small nginx client_max_body_size, in MiB
	DefaultProxyDrainTimeout = 30 * time.Second
)

// Proxy configures `gantry proxy` (alone, or inside `gantry server
// --proxy`): where it listens, TLS, and its limits. The routes are per
// environment (Environment.Routes).
//
//	proxy:
//	  listen: ":80"
//	  tls: { listen: ":443", cert: /etc/gantry/shop.crt, key: /etc/gantry/shop.key }
//	  max_body: 10MB
//	  drain_timeout: 30s
type Proxy struct {
	// Listen is the plain HTTP address (HTTP/1.1, and HTTP/2 with prior
	// knowledge, h2c).
	Listen string `yaml:"listen" json:"listen"`
	// TLS terminates HTTPS (HTTP/1.1 and HTTP/2) with certificate files.
	TLS *ProxyTLS `yaml:"tls" json:"tls,omitempty"`
	// MaxBody is the largest request body passed on; larger ones are
	// answered 413. Written like 10MB, 512KB or 1GB (powers of 1024).
	MaxBody ByteSize `yaml:"max_body" json:"max_body"`
	// DrainTimeout is how long an old release's in-flight requests (and
	// WebSockets) may go on after traffic switched away from it.
	DrainTimeout Duration `yaml:"drain_timeout" json:"drain_timeout"`
}

// ProxyTLS is the HTTPS listener's address and certificate files (PEM).
type ProxyTLS struct {
	Listen string `yaml:"listen" json:"listen"`
	Cert   string `yaml:"cert" json:"cert"`
	Key    string `yaml:"key" json:"key"`
}

// ProxyRoute sends requests for Host and a path prefix to a service's
// container Port. The proxy reaches the container through the port gantry
// publishes for it on 127.0.0.1 (chosen by Docker), so an old and a new
// release run side by side.
//
//	routes:
//	  web: { host: shop.example.com, path: /, port: 8080 }
type ProxyRoute struct {
	// Host is the host name the route answers (without port); empty means
	// any host.
	Host string `yaml:"host" json:"host,omitempty"`
	// Path is a path prefix matched on whole segments (/api matches /api
	// and /api/x, not /apix); the longest prefix wins. Default /.
	Path string `yaml:"path" json:"path"`
	// Port is the container port the service listens on.
	Port int `yaml:"port" json:"port"`
	// Canary, when set, deploys the service as a canary (StrategyCanary)
	// once a stable release is routed; its first deploy is blue/green.
	Canary *Canary `yaml:"canary" json:"canary,omitempty"`
}

// UnmarshalYAML reads the route's mapping, naming the allowed fields when
// one is unknown (as "route", like the other sections).
func (r *ProxyRoute) UnmarshalYAML(n *yaml.Node) error {
	if err := knownKeys(n, "ProxyRoute", "route"); err != nil {
		return err
	}
	return n.Decode((*proxyRouteFields)(r))
}

// proxyRouteFields decodes ProxyRoute's mapping without recursing.
type proxyRouteFields ProxyRoute

// ByteSize is a size written like 10MB, 512KB or 1048576.
type ByteSize int64

// UnmarshalYAML reads 10MB, 512KB, 1GB or a number of bytes.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	v, err := units.RAMInBytes(s)
	if err != nil || v <= 0 || n.Kind != yaml.ScalarNode {
		return &Error{Line: n.Line, col: n.Column, Msg: fmt.Sprintf("%q is not a size; write it like 10MB, 512KB or 1GB", n.Value)}
	}
	*b = ByteSize(v)
	return nil
}

// String writes the size the way it is read (10MiB).
func (b ByteSize) String() string { return units.BytesSize(float64(b)) }

// hostLabelRE is one label of a host name (RFC 1123).
var hostLabelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidHost says whether h is a host name a route may answer: lower case
// RFC 1123 labels, or an IP address.
func ValidHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if len(h) > 253 || h == "" {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if !hostLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}

// CleanRoutePath is a route's path prefix without a trailing slash (but /
// itself), so that /api and /api/ are the same route.
func CleanRoutePath(p string) string {
	if p == "" {
		return "/"
	}
	if len(p) > 1 {
		p = strings.TrimRight(p, "/")
		if p == "" {
			p = "/"
		}
	}
	return p
}

// proxy checks the proxy section and fills in its defaults.
func (v *validator) proxy(p *Proxy) {
	if p.Listen == "" {
		p.Listen = DefaultProxyListen
	}
	if err := checkListen(p.Listen); err != nil {
		v.fail(err.Error(), "proxy", "listen")
	}
	if t := p.TLS; t != nil {
		if t.Listen == "" {
			t.Listen = DefaultProxyTLSListen
		}
		if err := checkListen(t.Listen); err != nil {
			v.fail(err.Error(), "proxy", "tls", "listen")
		}
		if t.Cert == "" || t.Key == "" {
			v.fail("tls needs both cert and key (PEM files), for example `tls: { cert: certs/shop.crt, key: certs/shop.key }`", "proxy", "tls")
		}
	}
	if p.MaxBody == 0 {
		p.MaxBody = DefaultProxyMaxBody
	}
	if p.DrainTimeout == 0 {
		if lineOf(v.root, "proxy", "drain_timeout") != 0 {
			v.fail("the drain timeout must be longer than 0; leave it out for the default of 30s", "proxy", "drain_timeout")
		}
		p.DrainTimeout = Duration(DefaultProxyDrainTimeout)
	}
}

// checkListen checks a HOST:PORT (or :PORT) listen address.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 0 || n > 65535 || (host != "" && net.ParseIP(host) == nil && host != "localhost") {
		return fmt.Errorf("%q is not a listen address; write HOST:PORT or :PORT, like :80 or 127.0.0.1:8080", addr)
	}
	return nil
}

// routes checks every environment's routes: a valid host name, a path
// prefix, the container port, and no two routes (in any environment, since
// one proxy may serve them all) answering the same host and path. Whether
// the service exists is checked against the compose model (Resolve).
func (v *validator) routes(f *File) {
	type owner struct{ env, svc string }
	seen := map[[2]string]owner{}
	for _, env := range f.EnvNames() {
		e := f.Environments[env]
		if e == nil {
			continue
		}
		for _, svc := range sortedKeys(e.Routes) {
			at := func(p ...string) []string { return append([]string{"environments", env, "routes", svc}, p...) }
			r := e.Routes[svc]
			if r == nil {
				v.fail("a route needs at least the container port, for example `web: { host: shop.example.com, port: 8080 }`", at()...)
				continue
			}
			if strings.Contains(r.Host, "://") || (strings.ContainsAny(r.Host, ":/") && net.ParseIP(r.Host) == nil) {
				v.fail(fmt.Sprintf("%q is not a host name; write the name only, without scheme, port or path, like shop.example.com", r.Host), at("host")...)
				continue
			}
			r.Host = strings.TrimSuffix(strings.ToLower(r.Host), ".")
			if r.Host != "" && !ValidHost(r.Host) {
				v.fail(fmt.Sprintf("%q is not a valid host name; use letters, digits and - in dot-separated labels of at most 63 characters, like shop.example.com", r.Host), at("host")...)
				continue
			}
			if r.Path != "" && (!strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, "?# \t")) {
				v.fail(fmt.Sprintf("%q is not a path prefix; it starts with / and has no query, like / or /api", r.Path), at("path")...)
				continue
			}
			r.Path = CleanRoutePath(r.Path)
			if r.Port <= 0 || r.Port > 65535 {
				where := at("port")
				if lineOf(v.root, where...) == 0 {
					where = at()
				}
				v.fail("a route needs the container port the service listens on (1 to 65535), for example `port: 8080`", where...)
				continue
			}
			key := [2]string{r.Host, r.Path}
			if o, ok := seen[key]; ok {
				host := r.Host
				if host == "" {
					host = "any host"
				}
				v.fail(fmt.Sprintf("overlaps the route of %s in %s (%s, path %s); give one of them another host or path", o.svc, o.env, host, r.Path), at()...)
				continue
			}
			seen[key] = owner{env, svc}
			if r.Canary != nil {
				v.canary(r.Canary, at)
			}
		}
	}
}

// StrategyCanary is the strategy of a routed service whose route has a
// canary block: its new release takes a growing share of the traffic, step
// by step, and is aborted when its error ratio or latency crosses the
// thresholds (deploy/canary.go).
const StrategyCanary Strategy = "canary"

// Defaults of a route's canary block.
const (
	DefaultCanaryCookie        = "gantry-canary"
	DefaultCanaryMaxErrorRatio = 0.05
	DefaultCanaryMinRequests   = 20
	DefaultCanaryInterval      = time.Second
)

// Canary sends a share of a route's traffic to the new release, step by
// step, before all of it; a step whose canary answers too many 5xx or too
// slowly sends every request back to the stable release and fails the
// deployment (rolled back).
//
//	canary:
//	  steps:
//	    - { weight: 10, pause: 2m }
//	    - { weight: 50, pause: 5m }
//	    - { weight: 50 }              # no pause: waits for `gantry promote --step ENV`
//	  sticky: { cookie: gantry-canary }
//	  abort: { max_error_ratio: 0.05, max_p99: 800ms, min_requests: 20, interval: 1s }
type Canary struct {
	// Steps are the canary's shares of the traffic, in percent, each held
	// for its pause; after the last one the canary takes all traffic.
	Steps []CanaryStep `yaml:"steps" json:"steps"`
	// Sticky keeps one client on one release; default the cookie
	// gantry-canary.
	Sticky Sticky `yaml:"sticky" json:"sticky"`
	// Abort are the thresholds that fail a step.
	Abort CanaryAbort `yaml:"abort" json:"abort"`
}

// CanaryStep is one step: Weight percent of the requests (1 to 100) go to
// the canary for Pause; a step without a pause waits for `gantry promote
// --step ENV`.
type CanaryStep struct {
	Weight int      `yaml:"weight" json:"weight"`
	Pause  Duration `yaml:"pause" json:"pause,omitempty"`
}

// Manual says whether the step waits for `gantry promote --step`.
func (s CanaryStep) Manual() bool { return s.Pause == 0 }

// Sticky names the cookie or the request header whose value keeps a client
// on one release (at most one of them).
type Sticky struct {
	Cookie string `yaml:"cookie" json:"cookie,omitempty"`
	Header string `yaml:"header" json:"header,omitempty"`
}

// CanaryAbort are the thresholds a canary step is held to. A step fails
// when, with at least MinRequests requests to the canary, its 5xx ratio is
// above MaxErrorRatio or its p99 latency above MaxP99 (when set).
type CanaryAbort struct {
	// MaxErrorRatio is the largest share of 5xx answers (0 to 1); default 0.05.
	MaxErrorRatio float64 `yaml:"max_error_ratio" json:"max_error_ratio"`
	// MaxP99 is the largest p99 latency; default none (not checked).
	MaxP99 Duration `yaml:"max_p99" json:"max_p99,omitempty"`
	// MinRequests is how many requests the canary must have answered in a
	// step before it is judged; default 20. With fewer at the end of the
	// pause the step waits for them up to twice its pause, then fails as
	// inconclusive; 0 judges whatever came (and passes a step without
	// requests).
	MinRequests int `yaml:"min_requests" json:"min_requests"`
	// Interval is how often the engine reads the proxy's figures; default 1s.
	Interval Duration `yaml:"interval" json:"interval"`
}

// The canary block's types are decoded below the route's own decoder,
// which does not refuse unknown fields for them: each checks its keys.
type (
	canaryFields      Canary
	canaryStepFields  CanaryStep
	stickyFields      Sticky
	canaryAbortFields CanaryAbort
)

// UnmarshalYAML reads the canary block, refusing unknown fields.
func (c *Canary) UnmarshalYAML(n *yaml.Node) error {
	if err := knownKeys(n, "Canary", "canary"); err != nil {
		return err
	}
	return n.Decode((*canaryFields)(c))
}

// UnmarshalYAML reads the canary step, refusing unknown fields.
func (s *CanaryStep) UnmarshalYAML(n *yaml.Node) error {
	if err := knownKeys(n, "CanaryStep", "canary step"); err != nil {
		return err
	}
	return n.Decode((*canaryStepFields)(s))
}

// UnmarshalYAML reads the sticky block, refusing unknown fields.
func (s *Sticky) UnmarshalYAML(n *yaml.Node) error {
	if err := knownKeys(n, "Sticky", "sticky"); err != nil {
		return err
	}
	return n.Decode((*stickyFields)(s))
}

// UnmarshalYAML reads the abort block, refusing unknown fields.
func (a *CanaryAbort) UnmarshalYAML(n *yaml.Node) error {
	if err := knownKeys(n, "CanaryAbort", "abort"); err != nil {
		return err
	}
	return n.Decode((*canaryAbortFields)(a))
}

// knownKeys refuses a key of mapping n that the config type typ does not
// have, naming the allowed ones.
func knownKeys(n *yaml.Node, typ, what string) error {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	keys := allowed(typ)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := n.Content[i], n.Content[i+1]; !contains(keys, k.Value) {
			return &Error{Line: v.Line, col: v.Column, Msg: "unknown field in " + what + "; allowed: " + strings.Join(keys, ", ")}
		}
	}
	return nil
}

// tokenRE is an HTTP token (RFC 9110): what a cookie or header name may be.
var tokenRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// canary checks a route's canary block and fills in its defaults; at is
// where the route is written.
func (v *validator) canary(c *Canary, at func(p ...string) []string) {
	if len(c.Steps) == 0 {
		v.fail("a canary needs at least one step, for example `steps: [{ weight: 10, pause: 2m }, { weight: 50, pause: 5m }]`", at("canary")...)
		return
	}
	prev := 0
	for i, s := range c.Steps {
		where := at("canary", "steps", strconv.Itoa(i))
		switch {
		case s.Weight < 1 || s.Weight > 100:
			v.fail(fmt.Sprintf("weight %d is not a share of the traffic; write a percent from 1 to 100, like `weight: 10`", s.Weight), where...)
		case s.Weight < prev:
			v.fail(fmt.Sprintf("weight %d is less than the step before (%d); the canary's share may only grow, step by step", s.Weight, prev), where...)
		case s.Weight == 100 && i != len(c.Steps)-1:
			v.fail("only the last step may send all traffic (100) to the canary; after the last step it takes all traffic anyway", where...)
		case s.Pause == 0 && lineOf(v.root, append(where, "pause")...) != 0:
			v.fail("a pause must be longer than 0; leave pause out for a step that waits for `gantry promote --step`", append(where, "pause")...)
		}
		prev = s.Weight
	}
	switch st := &c.Sticky; {
	case st.Cookie != "" && st.Header != "":
		v.fail("sticky takes a cookie or a header, not both", at("canary", "sticky")...)
	case st.Cookie != "" && !tokenRE.MatchString(st.Cookie):
		v.fail(fmt.Sprintf("%q is not a cookie name; use letters, digits and - or _, like gantry-canary", st.Cookie), at("canary", "sticky", "cookie")...)
	case st.Header != "" && !tokenRE.MatchString(st.Header):
		v.fail(fmt.Sprintf("%q is not a header name; use letters, digits and -, like X-User-Id", st.Header), at("canary", "sticky", "header")...)
	case st.Cookie == "" && st.Header == "":
		st.Cookie = DefaultCanaryCookie
	}
	a := &c.Abort
	ab := func(p string) []string { return at("canary", "abort", p) }
	if lineOf(v.root, ab("max_error_ratio")...) == 0 {
		a.MaxErrorRatio = DefaultCanaryMaxErrorRatio
	} else if a.MaxErrorRatio < 0 || a.MaxErrorRatio > 1 {
		v.fail(fmt.Sprintf("max_error_ratio %g is not a ratio; write a number from 0 to 1, like 0.05 for 5%%", a.MaxErrorRatio), ab("max_error_ratio")...)
	}
	if a.MaxP99 == 0 && lineOf(v.root, ab("max_p99")...) != 0 {
		v.fail("max_p99 must be longer than 0; leave it out to not judge latency", ab("max_p99")...)
	}
	if lineOf(v.root, ab("min_requests")...) == 0 {
		a.MinRequests = DefaultCanaryMinRequests
	} else if a.MinRequests < 0 {
		v.fail(fmt.Sprintf("min_requests %d is negative; write 0 or more (0 judges a step on whatever requests came)", a.MinRequests), ab("min_requests")...)
	}
	if a.Interval == 0 {
		if lineOf(v.root, ab("interval")...) != 0 {
			v.fail("the interval must be longer than 0; leave it out for the default of 1s", ab("interval")...)
		}
		a.Interval = Duration(DefaultCanaryInterval)
	}
}
