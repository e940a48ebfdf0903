// Package config loads gantry.yaml, validates it while it loads, and resolves
// an environment into a deployable model by reading the project's compose
// files through compose-go, so gantry understands exactly what
// `docker compose config` understands.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults for an environment's policy. The health window comes from the
// seed notes: "roll back automatically if health checks fail within 5 minutes".
const (
	DefaultWindow       = 5 * time.Minute
	DefaultMinHealthy   = 10 * time.Second
	DefaultKeepReleases = 2
	DefaultProbeEvery   = time.Second
	DefaultProbeTimeout = 2 * time.Second
	// DefaultHealthCache is how long the health view reuses a check: the
	// notes' "30-second cache on health results".
	DefaultHealthCache = 30 * time.Second
	DefaultFileName    = "gantry.yaml"
)

// Strategy says how a service's old and new containers are exchanged.
type Strategy string

const (
	// StrategyAuto picks stop-first for services that hold a fixed host port
	// and start-first for the others.
	StrategyAuto       Strategy = "auto"
	StrategyStartFirst Strategy = "start-first"
	StrategyStopFirst  Strategy = "stop-first"
)

var strategies = []Strategy{StrategyAuto, StrategyStartFirst, StrategyStopFirst}

// File is a loaded and validated gantry.yaml.
type File struct {
	Project      string                  `yaml:"project" json:"project"`
	Compose      StringList              `yaml:"compose" json:"compose"`
	Services     map[string]ServiceRef   `yaml:"services" json:"services,omitempty"`
	Environments map[string]*Environment `yaml:"environments" json:"environments"`
	Release      Release                 `yaml:"release" json:"release"`
	Registry     Registry                `yaml:"registry" json:"registry"`
	Lint         Lint                    `yaml:"lint" json:"lint"`
	Notify       Notify                  `yaml:"notify" json:"notify"`
	Gates        Gates                   `yaml:"gates" json:"gates"`
	Proxy        Proxy                   `yaml:"proxy" json:"proxy"`

	// Path is the file gantry.yaml was read from; Dir is its directory, the
	// base of every relative path in it.
	Path string `yaml:"-" json:"-"`
	Dir  string `yaml:"-" json:"-"`
}

// ServiceRef is what gantry.yaml says about one compose service.
type ServiceRef struct {
	// Image overrides the compose file's image for the service.
	Image string `yaml:"image" json:"image,omitempty"`
	// Job marks a one-shot service that must run to completion with exit
	// code 0. Services that another one depends on with
	// service_completed_successfully are jobs without saying so.
	Job bool `yaml:"job" json:"job,omitempty"`
	// Build says how gantry build makes the service's image. Without it,
	// the compose service's build section is used.
	Build *Build `yaml:"build" json:"build,omitempty"`
}

// Build is how one service's image is built: from a Dockerfile (on the
// Docker engine, or through docker buildx for several platforms), or,
// when Binaries is set, without any daemon from prebuilt binaries, one per
// platform, each laid as a layer on Base (ko-style).
type Build struct {
	// Context is the build context directory, relative to gantry.yaml.
	// `build: ./api` is short for `build: { context: ./api }`.
	Context    string            `yaml:"context" json:"context,omitempty"`
	Dockerfile string            `yaml:"dockerfile" json:"dockerfile,omitempty"`
	Args       map[string]string `yaml:"args" json:"args,omitempty"`
	Target     string            `yaml:"target" json:"target,omitempty"`
	// Binaries maps a platform (linux/amd64) to a file built for it.
	Binaries map[string]string `yaml:"binaries" json:"binaries,omitempty"`
	// Base is the image the binary is laid on; empty means scratch.
	Base string `yaml:"base" json:"base,omitempty"`
	// Path is where the binary goes in the image (default /<service>);
	// Entrypoint defaults to [Path], Cmd to none.
	Path       string   `yaml:"path" json:"path,omitempty"`
	Entrypoint []string `yaml:"entrypoint" json:"entrypoint,omitempty"`
	Cmd        []string `yaml:"cmd" json:"cmd,omitempty"`
	// Env (KEY=value), User and Expose (8080/tcp) go to the image config.
	Env    []string `yaml:"env" json:"env,omitempty"`
	User   string   `yaml:"user" json:"user,omitempty"`
	Expose []string `yaml:"expose" json:"expose,omitempty"`
}

// UnmarshalYAML reads a context directory or the full mapping.
func (b *Build) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*b = Build{Context: n.Value}
		return nil
	}
	if n.Kind == yaml.MappingNode {
		keys := allowed("Build")
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k, v := n.Content[i], n.Content[i+1]; !contains(keys, k.Value) {
				return &Error{Line: v.Line, col: v.Column, Msg: "unknown field in build; allowed: " + strings.Join(keys, ", ")}
			}
		}
	}
	return n.Decode((*buildFields)(b))
}

// buildFields decodes Build's mapping without recursing into UnmarshalYAML.
type buildFields Build

// Daemonless reports whether the image is assembled from prebuilt binaries.
func (b *Build) Daemonless() bool { return b != nil && len(b.Binaries) > 0 }

// Defaults of the registry section.
const (
	// RegistryEmbedded as registry.url means gantry's own registry
	// (gantry registry serve) at DefaultEmbeddedRegistry.
	RegistryEmbedded        = "embedded"
	DefaultEmbeddedRegistry = "127.0.0.1:5000"
)

// DefaultImmutableTags are the tags that never move once pushed: versions,
// as X.Y.Z with an optional prerelease (1.4.0, 1.4.0-rc.1).
var DefaultImmutableTags = []string{`^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`}

// Registry is where released images go.
type Registry struct {
	// URL is a registry host with an optional namespace (ghcr.io/acme,
	// 127.0.0.1:5000) or "embedded". A service's image that names no
	// registry host is pushed under it.
	URL string `yaml:"url" json:"url,omitempty"`
	// ImmutableTags are regular expressions; a tag that matches one is
	// never moved to another digest. Default: DefaultImmutableTags.
	ImmutableTags []string `yaml:"immutable_tags" json:"immutable_tags"`
	// Username and PasswordEnv (the name of an environment variable) are
	// credentials for the registry; without them gantry uses the Docker
	// config and its credential helpers, and GITHUB_TOKEN for ghcr.io.
	Username    string `yaml:"username" json:"username,omitempty"`
	PasswordEnv string `yaml:"password_env" json:"password_env,omitempty"`
}

// Host is the registry URL with "embedded" resolved.
func (r Registry) Host() string {
	if r.URL == RegistryEmbedded {
		return DefaultEmbeddedRegistry
	}
	return r.URL
}

// Immutable reports whether tag must never move.
func (r Registry) Immutable(tag string) bool {
	for _, p := range r.ImmutableTags {
		if re, err := regexp.Compile(p); err == nil && re.MatchString(tag) {
			return true
		}
	}
	return false
}

// Repository is the repository a service's image is released to, without
// tag or digest: the service's image with registry.url put before it when
// it names no registry host, or <registry.url>/<project>/<service> when
// gantry.yaml gives no image.
func (f *File) Repository(service string) (string, error) {
	img := f.Services[service].Image
	host := f.Registry.Host()
	if img == "" {
		if host == "" {
			return "", fmt.Errorf("service %s has no image to release to; set services.%s.image (like ghcr.io/acme/%s) or registry.url", service, service, service)
		}
		return host + "/" + f.Project + "/" + service, nil
	}
	if i := strings.Index(img, "@"); i >= 0 {
		img = img[:i]
	}
	if i := strings.LastIndex(img, ":"); i > strings.LastIndex(img, "/") {
		img = img[:i]
	}
	first, _, found := strings.Cut(img, "/")
	namesHost := found && (strings.ContainsAny(first, ".:") || first == "localhost")
	if !namesHost && host != "" {
		img = strings.TrimSuffix(host, "/") + "/" + img
	}
	return img, nil
}

// Defaults of the release section: how versions and image tags are made.
const (
	DefaultReleaseBranch  = "main"
	DefaultTagPrefix      = "v"
	DefaultInitialVersion = "0.0.0"
	PrereleaseRC          = "rc"
	PrereleaseBranch      = "branch"
)

// Release says how gantry computes versions from conventional commits and
// the image tags and labels of a build (gantry version, changelog, tags).
type Release struct {
	// Branch is the release branch: stable versions come from it, every
	// other branch gives prereleases.
	Branch string `yaml:"branch" json:"branch"`
	// TagPrefix goes before the version in git tags (v1.4.0). It may be
	// written empty for tags like 1.4.0.
	TagPrefix string `yaml:"tag_prefix" json:"tag_prefix"`
	// InitialVersion is where versions start when no version tag exists.
	InitialVersion string `yaml:"initial_version" json:"initial_version"`
	// MajorOnZero makes a breaking change bump 0.x to 1.0.0; by default it
	// bumps the minor version while the major is 0 (svu's --v0).
	MajorOnZero bool `yaml:"major_on_zero" json:"major_on_zero"`
	// MajorTagOnZero adds the {{major}} image tag (0) while 0.x.
	MajorTagOnZero bool `yaml:"major_tag_on_zero" json:"major_tag_on_zero"`
	// Prerelease names prereleases on other branches: rc (1.4.0-rc.2) or
	// branch (1.4.0-feature-login.2).
	Prerelease string `yaml:"prerelease" json:"prerelease"`
	// Bump maps commit types to what they bump (none, patch, minor,
	// major), on top of feat: minor, fix: patch, perf: patch.
	Bump map[string]string `yaml:"bump" json:"bump,omitempty"`
	// Description and Licenses (an SPDX expression) become the images'
	// OCI labels; Labels adds or overrides any label.
	Description string            `yaml:"description" json:"description,omitempty"`
	Licenses    string            `yaml:"licenses" json:"licenses,omitempty"`
	Labels      map[string]string `yaml:"labels" json:"labels,omitempty"`
	// Platforms are what gantry build builds for (linux/amd64,
	// linux/arm64); empty means the Docker engine's own platform.
	Platforms []string `yaml:"platforms" json:"platforms,omitempty"`
}

// DefaultRelease is the release section of a project without gantry.yaml.
func DefaultRelease() Release {
	r := Release{TagPrefix: DefaultTagPrefix}
	(&validator{}).release(&r)
	return r
}

// Environment is a named deploy target and its policy.
type Environment struct {
	Name string `yaml:"-" json:"name"`
	// Host is the Docker host: unix:///var/run/docker.sock or tcp://host:2376.
	// Empty means $DOCKER_HOST, or the local socket.
	Host         string     `yaml:"host" json:"host,omitempty"`
	ComposeFiles StringList `yaml:"compose_files" json:"compose_files,omitempty"`
	Profiles     []string   `yaml:"profiles" json:"profiles,omitempty"`
	EnvFiles     []string   `yaml:"env_files" json:"env_files,omitempty"`
	Strategy     Strategy   `yaml:"strategy" json:"strategy"`
	KeepReleases *int       `yaml:"keep_releases" json:"keep_releases"`
	Health       Health     `yaml:"health" json:"health"`
	// Protected environments receive releases only through gantry
	// promote, and only once Approvals are given; gantry deploy refuses
	// them. Approvals is filled in with its defaults when Protected.
	Protected bool       `yaml:"protected" json:"protected,omitempty"`
	Approvals *Approvals `yaml:"approvals" json:"approvals,omitempty"`
	// Requires names environments in which a release must have succeeded
	// before gantry promote, or gantry deploy, takes it here.
	Requires []string `yaml:"requires" json:"requires,omitempty"`
	// Analysis checks a release against Prometheus during its health gate
	// and a watch window after the switch (see analysis.go).
	Analysis *Analysis `yaml:"analysis" json:"analysis,omitempty"`
	// RequireGates: only releases whose gates (gates: in gantry.yaml)
	// ran and passed are deployed or promoted here, unless an admin
	// overrides with a reason.
	RequireGates bool `yaml:"require_gates" json:"require_gates,omitempty"`
	// Routes are what the gantry proxy serves for this environment's
	// services, by service name.
	Routes map[string]*ProxyRoute `yaml:"routes" json:"routes,omitempty"`
	// Swarm is a Swarm manager's Docker host (unix://, tcp://, ssh://):
	// the environment runs as Swarm services there. It is short for
	// `target: swarm` with host; see docs/swarm.md.
	Swarm string `yaml:"swarm" json:"swarm,omitempty"`
	// Target is where the environment runs: docker (a Docker host, the
	// default) or swarm (the services of a Docker Swarm, managed through
	// Host); `swarm: URL` sets it.
	Target string `yaml:"target" json:"target,omitempty"`
}

// Defaults of a protected environment's approvals.
const (
	DefaultApprovals      = 1
	DefaultApprovalExpiry = 24 * time.Hour
	// ApproverRolePrefix marks an entry of approvals.from as a role
	// (role:admin) rather than a person's name.
	ApproverRolePrefix = "role:"
)

// ApproverRoles are the roles approvals.from may name; viewers only read.
var ApproverRoles = []string{"admin", "editor"}

// Approvals is how many people must approve a promotion, and who may.
type Approvals struct {
	// Required approvals, from people other than the requester.
	Required int `yaml:"required" json:"required"`
	// From lists who may approve: role:admin, role:editor or names.
	// Empty means any admin or editor.
	From []string `yaml:"from" json:"from,omitempty"`
	// Expire is how long a request waits before it is cancelled.
	Expire Duration `yaml:"expire" json:"expire"`
}

// Health is the health gate of an environment.
type Health struct {
	Window     Duration         `yaml:"window" json:"window"`
	MinHealthy Duration         `yaml:"min_healthy" json:"min_healthy"`
	Probes     map[string]Probe `yaml:"probes" json:"probes,omitempty"`
	// Cache is how long the health view (gantry health, /health/{env})
	// reuses its last check, so that dashboards and load balancers polling
	// it do not load the services; 0 checks on every request.
	Cache Duration `yaml:"cache" json:"cache"`
}

// Probe is a check gantry runs itself, on top of the image's healthcheck.
type Probe struct {
	HTTP     *HTTPProbe `yaml:"http" json:"http,omitempty"`
	TCP      *TCPProbe  `yaml:"tcp" json:"tcp,omitempty"`
	Exec     *ExecProbe `yaml:"exec" json:"exec,omitempty"`
	Interval Duration   `yaml:"interval" json:"interval"`
	Timeout  Duration   `yaml:"timeout" json:"timeout"`
}

// HTTPProbe sends GET Path to the container's Port and expects Status.
type HTTPProbe struct {
	Port   int    `yaml:"port" json:"port"`
	Path   string `yaml:"path" json:"path"`
	Status int    `yaml:"status" json:"status"`
}

// TCPProbe connects to the container's Port.
type TCPProbe struct {
	Port int `yaml:"port" json:"port"`
}

// ExecProbe runs Command inside the container and expects exit code 0.
type ExecProbe struct {
	Command []string `yaml:"command" json:"command"`
}

// Duration is a time.Duration written as "30s" or "5m" in YAML and JSON.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration as a string such as "5m0s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// UnmarshalJSON reads what MarshalJSON writes ("5m0s"), or nanoseconds:
// plans stored with a duration in them decode again.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("%s is not a duration", b)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML reads "30s", "5m", "1h30m".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil || v < 0 {
		return &Error{Line: n.Line, col: n.Column, Msg: fmt.Sprintf("%q is not a duration; write it like 30s, 5m or 1h", n.Value)}
	}
	*d = Duration(v)
	return nil
}

// StringList accepts a single string or a list of strings.
type StringList []string

// UnmarshalYAML reads "a" or [a, b].
func (s *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*s = StringList{n.Value}
		return nil
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return &Error{Line: n.Line, col: n.Column, Msg: "expected a list of file names"}
		}
		*s = l
		return nil
	}
	return &Error{Line: n.Line, col: n.Column, Msg: "expected a file name or a list of file names"}
}

// Error is a problem in a configuration file, with where it is.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string

	// col is the column of the offending value, set by the value decoders
	// so that Parse can name the field exactly.
	col int
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads and validates a gantry.yaml.
func Load(path string) (*File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &Error{File: path, Msg: "file not found; run `gantry init` next to your compose file to write one, or pass --file"}
		}
		return nil, &Error{File: path, Msg: err.Error()}
	}
	return Parse(path, abs, data)
}

// Parse validates the content of a gantry.yaml read from path.
func Parse(path, abs string, data []byte) (*File, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(path, err)
	}
	if len(root.Content) == 0 {
		return nil, &Error{File: path, Msg: "the file is empty; it needs at least `project:` and `environments:`"}
	}
	f := &File{Path: abs, Dir: filepath.Dir(abs)}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.File = path
			ce.Field = fieldWhere(root.Content[0], func(_, v *yaml.Node) bool { return v.Line == ce.Line && v.Column == ce.col })
			return nil, ce
		}
		ye := yamlError(path, err)
		if ce, ok := ye.(*Error); ok && ce.Line > 0 {
			// yaml.v3 names only the bare key (unknown field) or nothing
			// (type mismatch); name the full path like the validator does.
			match := func(k, v *yaml.Node) bool {
				return k.Line == ce.Line || (v.Line == ce.Line && v.Kind == yaml.ScalarNode)
			}
			if ce.Field != "" {
				match = func(k, _ *yaml.Node) bool { return k.Line == ce.Line && k.Value == ce.Field }
			}
			if f := fieldWhere(root.Content[0], match); f != "" {
				ce.Field = f
			}
		}
		return nil, ye
	}
	v := validator{path: path, root: root.Content[0], dir: f.Dir}
	v.file(f)
	if v.err != nil {
		return nil, v.err
	}
	return f, nil
}

// Env returns the named environment, or an error listing the known ones.
func (f *File) Env(name string) (*Environment, error) {
	if e, ok := f.Environments[name]; ok {
		return e, nil
	}
	return nil, &Error{File: filepath.Base(f.Path), Field: "environments",
		Msg: fmt.Sprintf("no environment %q; known: %s", name, strings.Join(f.EnvNames(), ", "))}
}

// EnvNames lists the environments in name order.
func (f *File) EnvNames() []string {
	names := make([]string, 0, len(f.Environments))
	for n := range f.Environments {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Keep is the number of earlier releases whose containers stay for rollback.
func (e *Environment) Keep() int {
	if e.KeepReleases == nil {
		return DefaultKeepReleases
	}
	return *e.KeepReleases
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

type validator struct {
	path string
	root *yaml.Node
	err  error
	// envs are the file's environment names, for references between them.
	envs []string
	// dir is gantry.yaml's directory, the base of relative paths.
	dir string
}

func (v *validator) fail(msg string, path ...string) {
	if v.err != nil {
		return
	}
	v.err = &Error{File: v.path, Line: lineOf(v.root, path...), Field: strings.Join(path, "."), Msg: msg}
}

func (v *validator) file(f *File) {
	switch {
	case f.Project == "":
		v.fail("missing; name the project, for example `project: shop` (lower case letters, digits, - and _)", "project")
	case !nameRE.MatchString(f.Project):
		v.fail(fmt.Sprintf("%q is not a valid name; use lower case letters, digits, - and _, starting with a letter or digit", f.Project), "project")
	}
	if len(f.Compose) == 0 {
		f.Compose = StringList{"compose.yaml"}
		for _, c := range []string{"compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"} {
			if _, err := os.Stat(filepath.Join(f.Dir, c)); err == nil {
				f.Compose = StringList{c}
				break
			}
		}
	}
	for _, name := range sortedKeys(f.Services) {
		s := f.Services[name]
		if s.Image != "" && strings.ContainsAny(s.Image, " \t") {
			v.fail(fmt.Sprintf("%q is not an image reference", s.Image), "services", name, "image")
		}
		v.build(name, s.Build)
	}
	v.registry(&f.Registry)
	v.gates(f)
	v.notify(&f.Notify)
	if len(f.Environments) == 0 {
		v.fail("no environments; add at least one, for example\n  environments:\n    staging:\n      health: { window: 5m }", "environments")
	}
	if lineOf(v.root, "release", "tag_prefix") == 0 {
		f.Release.TagPrefix = DefaultTagPrefix
	}
	v.release(&f.Release)
	v.envs = f.EnvNames()
	for _, name := range f.EnvNames() {
		e := f.Environments[name]
		if e == nil {
			e = &Environment{}
			f.Environments[name] = e
		}
		e.Name = name
		if !nameRE.MatchString(name) {
			v.fail("environment names use lower case letters, digits, - and _", "environments", name)
		}
		v.env(e)
		v.requireGates(f, e)
	}
	v.proxy(&f.Proxy)
	v.routes(f)
}

func (v *validator) env(e *Environment) {
	at := func(p ...string) []string { return append([]string{"environments", e.Name}, p...) }
	if e.Host != "" && !hasAnyPrefix(e.Host, "unix://", "tcp://", "ssh://", "npipe://") {
		v.fail(fmt.Sprintf("%q is not a Docker host; use unix:///var/run/docker.sock, tcp://host:2376 or ssh://user@host", e.Host), at("host")...)
	}
	v.target(e)
	if e.Strategy == "" {
		e.Strategy = StrategyAuto
	}
	if !contains(strategies, e.Strategy) {
		v.fail(fmt.Sprintf("%q is not a strategy; use one of auto, start-first, stop-first", e.Strategy), at("strategy")...)
	}
	if e.KeepReleases != nil && (*e.KeepReleases < 0 || *e.KeepReleases > 50) {
		v.fail("must be between 0 and 50", at("keep_releases")...)
	}
	v.approvals(e)
	v.analysis(e)
	h := &e.Health
	if h.Window == 0 {
		if lineOf(v.root, at("health", "window")...) != 0 {
			v.fail("the health window must be longer than 0; leave it out for the default of 5m", at("health", "window")...)
		}
		h.Window = Duration(DefaultWindow)
	}
	if lineOf(v.root, at("health", "min_healthy")...) == 0 {
		h.MinHealthy = Duration(DefaultMinHealthy)
	}
	switch {
	case lineOf(v.root, at("health", "cache")...) == 0:
		h.Cache = Duration(DefaultHealthCache)
	case h.Cache.D() > time.Hour:
		v.fail(fmt.Sprintf("the health view's cache (%s) may be at most 1h; the default is 30s", h.Cache.D()), at("health", "cache")...)
	}
	if h.MinHealthy >= h.Window {
		v.fail(fmt.Sprintf("min_healthy (%s) must be shorter than the health window (%s)", h.MinHealthy.D(), h.Window.D()), at("health", "min_healthy")...)
	}
	for svc, p := range h.Probes {
		p := p
		pat := at("health", "probes", svc)
		n := 0
		if p.HTTP != nil {
			n++
			if p.HTTP.Port <= 0 || p.HTTP.Port > 65535 {
				v.fail("http probe needs the container port, for example `http: { port: 8080, path: /healthz }`", append(pat, "http", "port")...)
			}
			if p.HTTP.Path == "" {
				p.HTTP.Path = "/"
			}
			if !strings.HasPrefix(p.HTTP.Path, "/") {
				v.fail("the path must start with /", append(pat, "http", "path")...)
			}
			if p.HTTP.Status == 0 {
				p.HTTP.Status = 200
			}
		}
		if p.TCP != nil {
			n++
			if p.TCP.Port <= 0 || p.TCP.Port > 65535 {
				v.fail("tcp probe needs the container port, for example `tcp: { port: 5432 }`", append(pat, "tcp", "port")...)
			}
		}
		if p.Exec != nil {
			n++
			if len(p.Exec.Command) == 0 {
				v.fail("exec probe needs a command, for example `exec: { command: [/app, check] }`", append(pat, "exec", "command")...)
			}
		}
		if n != 1 {
			v.fail("a probe has exactly one of http, tcp or exec", pat...)
		}
		if p.Interval == 0 {
			p.Interval = Duration(DefaultProbeEvery)
		}
		if p.Timeout == 0 {
			p.Timeout = Duration(DefaultProbeTimeout)
		}
		h.Probes[svc] = p
	}
}

var approverNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]*$`)

// approvals checks an environment's promotion policy and fills in its
// defaults: a protected environment needs one approval, which expires
// after 24 hours, unless it says otherwise.
func (v *validator) approvals(e *Environment) {
	at := func(p ...string) []string { return append([]string{"environments", e.Name}, p...) }
	if e.Approvals != nil && !e.Protected {
		v.fail("approvals apply to a protected environment; add `protected: true` or remove approvals", at("approvals")...)
	}
	if e.Protected && e.Approvals == nil {
		e.Approvals = &Approvals{}
	}
	if a := e.Approvals; a != nil {
		if a.Required == 0 && lineOf(v.root, at("approvals", "required")...) == 0 {
			a.Required = DefaultApprovals
		}
		if a.Required < 1 || a.Required > 10 {
			v.fail("must be between 1 and 10", at("approvals", "required")...)
		}
		names := 0
		for i, who := range a.From {
			if role, ok := strings.CutPrefix(who, ApproverRolePrefix); ok {
				if !contains(ApproverRoles, role) {
					v.fail(fmt.Sprintf("%q is not a role that may approve; use role:admin or role:editor (viewers only read)", who), at("approvals", "from", fmt.Sprint(i))...)
				}
				continue
			}
			if !approverNameRE.MatchString(who) {
				v.fail(fmt.Sprintf("%q is neither a role nor a name; write role:admin, role:editor or a person's name like alice", who), at("approvals", "from", fmt.Sprint(i))...)
			}
			names++
		}
		if names == len(a.From) && names > 0 && names < a.Required {
			v.fail(fmt.Sprintf("%d approvals are required but from names only %d people; add people or a role (role:admin)", a.Required, names), at("approvals", "required")...)
		}
		if a.Expire == 0 {
			if lineOf(v.root, at("approvals", "expire")...) != 0 {
				v.fail("approvals must expire after more than 0; leave it out for the default of 24h", at("approvals", "expire")...)
			}
			a.Expire = Duration(DefaultApprovalExpiry)
		}
	}
	for i, r := range e.Requires {
		switch {
		case r == e.Name:
			v.fail(fmt.Sprintf("%s cannot require itself; name the environment a release must pass first, like staging", r), at("requires", fmt.Sprint(i))...)
		case v.envs != nil && !contains(v.envs, r):
			v.fail(fmt.Sprintf("%q is not an environment; known: %s", r, strings.Join(v.envs, ", ")), at("requires", fmt.Sprint(i))...)
		}
	}
}

var (
	semverCoreRE = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
	tagPrefixRE  = regexp.MustCompile(`^([A-Za-z0-9._-]+/)*[A-Za-z._-]*$`)
	commitTypeRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	bumps        = []string{"none", "patch", "minor", "major"}
)

// release checks the release section and fills in its defaults. The tag
// prefix is the caller's: an empty prefix written out is kept.
func (v *validator) release(r *Release) {
	at := func(p ...string) []string { return append([]string{"release"}, p...) }
	if r.Branch == "" {
		r.Branch = DefaultReleaseBranch
	}
	if !validBranch(r.Branch) {
		v.fail(fmt.Sprintf("%q is not a branch name git allows", r.Branch), at("branch")...)
	}
	switch {
	case len(r.TagPrefix) > 32:
		v.fail("the tag prefix is at most 32 characters", at("tag_prefix")...)
	case !tagPrefixRE.MatchString(r.TagPrefix) || strings.Contains(r.TagPrefix, "..") || strings.HasPrefix(r.TagPrefix, ".") || strings.Contains(r.TagPrefix, "/."):
		v.fail(fmt.Sprintf("%q cannot start a version tag; use letters, ., _, - and /, and no digit at the end, like v or release/", r.TagPrefix), at("tag_prefix")...)
	}
	if r.InitialVersion == "" {
		r.InitialVersion = DefaultInitialVersion
	}
	if !semverCoreRE.MatchString(r.InitialVersion) {
		v.fail(fmt.Sprintf("%q is not a version; write MAJOR.MINOR.PATCH without prefix, like 0.1.0 or 1.0.0", r.InitialVersion), at("initial_version")...)
	}
	if r.Prerelease == "" {
		r.Prerelease = PrereleaseRC
	}
	if r.Prerelease != PrereleaseRC && r.Prerelease != PrereleaseBranch {
		v.fail(fmt.Sprintf("%q is not a prerelease style; use rc (1.4.0-rc.1) or branch (1.4.0-my-branch.1)", r.Prerelease), at("prerelease")...)
	}
	for _, typ := range sortedKeys(r.Bump) {
		if !commitTypeRE.MatchString(typ) {
			v.fail(fmt.Sprintf("%q is not a commit type; use lower case letters, digits, - and _, like refactor or deps", typ), at("bump", typ)...)
		}
		if !contains(bumps, r.Bump[typ]) {
			v.fail(fmt.Sprintf("%q is not a bump; use none, patch, minor or major", r.Bump[typ]), at("bump", typ)...)
		}
	}
	for i, p := range r.Platforms {
		if !platformRE.MatchString(p) {
			v.fail(fmt.Sprintf("%q is not a platform; write os/arch, like linux/amd64 or linux/arm64", p), at("platforms", fmt.Sprint(i))...)
		}
	}
	for _, k := range sortedKeys(r.Labels) {
		if k == "" || strings.ContainsAny(k, " \t\n=") {
			v.fail(fmt.Sprintf("%q is not a label key; use a name like org.opencontainers.image.vendor", k), at("labels", k)...)
		}
	}
}

var platformRE = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9_]+(/v[0-9]+)?$`)

func (v *validator) build(service string, b *Build) {
	if b == nil {
		return
	}
	at := func(p ...string) []string { return append([]string{"services", service, "build"}, p...) }
	if b.Daemonless() && (b.Dockerfile != "" || b.Target != "" || len(b.Args) > 0) {
		v.fail("binaries build without a Dockerfile; remove dockerfile, target and args, or remove binaries", at("binaries")...)
	}
	for _, p := range sortedKeys(b.Binaries) {
		if !platformRE.MatchString(p) {
			v.fail(fmt.Sprintf("%q is not a platform; write os/arch, like linux/amd64 or linux/arm64", p), at("binaries", p)...)
		}
		if b.Binaries[p] == "" {
			v.fail("give the path of the binary built for "+p, at("binaries", p)...)
		}
	}
	if b.Path != "" && !strings.HasPrefix(b.Path, "/") {
		v.fail(fmt.Sprintf("%q is not an absolute path in the image, like /app", b.Path), at("path")...)
	}
	if !b.Daemonless() && (b.Base != "" || b.Path != "") {
		v.fail("base and path are for images built from binaries; add binaries: { linux/amd64: ./bin/app-amd64 }", at()...)
	}
}

func (v *validator) registry(r *Registry) {
	if strings.ContainsAny(r.URL, " \t") || strings.Contains(r.URL, "://") {
		v.fail(fmt.Sprintf("%q is not a registry; write a host with an optional namespace, like ghcr.io/acme or 127.0.0.1:5000, or embedded", r.URL), "registry", "url")
	}
	if r.ImmutableTags == nil {
		r.ImmutableTags = DefaultImmutableTags
	}
	for i, p := range r.ImmutableTags {
		if _, err := regexp.Compile(p); err != nil {
			v.fail(fmt.Sprintf("%q is not a regular expression: %v", p, err), "registry", "immutable_tags", fmt.Sprint(i))
		}
	}
	if r.PasswordEnv != "" && r.Username == "" {
		v.fail("password_env needs a username", "registry", "username")
	}
}

// validBranch follows git check-ref-format for a branch name.
func validBranch(b string) bool {
	if b == "" || b == "@" || strings.HasPrefix(b, "-") || strings.HasPrefix(b, "/") || strings.HasSuffix(b, "/") ||
		strings.HasSuffix(b, ".") || strings.HasSuffix(b, ".lock") || strings.Contains(b, "..") ||
		strings.Contains(b, "//") || strings.Contains(b, "@{") || strings.Contains(b, "/.") || strings.HasPrefix(b, ".") {
		return false
	}
	for _, c := range b {
		if c < 0x20 || c == 0x7f || strings.ContainsRune(" ~^:?*[\\", c) {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// lineOf finds the line of the value at path in a YAML mapping tree; 0 when absent.
func lineOf(n *yaml.Node, path ...string) int {
	for _, key := range path {
		if n != nil && n.Kind == yaml.SequenceNode {
			i, err := strconv.Atoi(key)
			if err != nil || i < 0 || i >= len(n.Content) {
				return 0
			}
			if len(path) == 1 {
				return n.Content[i].Line
			}
			n = n.Content[i]
			path = path[1:]
			continue
		}
		if n == nil || n.Kind != yaml.MappingNode {
			return 0
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
				if len(path) == 1 {
					return n.Content[i].Line
				}
				break
			}
		}
		if next == nil {
			return 0
		}
		n = next
		path = path[1:]
	}
	return 0
}

// fieldWhere names the dotted path of the first mapping entry, outermost
// first, whose key and value nodes match: the field of an error that yaml
// reports only by position.
func fieldWhere(n *yaml.Node, match func(k, v *yaml.Node) bool) string {
	var walk func(n *yaml.Node, prefix []string) string
	walk = func(n *yaml.Node, prefix []string) string {
		if n.Kind == yaml.SequenceNode && len(prefix) > 0 {
			for i, item := range n.Content {
				if r := walk(item, append(append([]string{}, prefix...), strconv.Itoa(i))); r != "" {
					return r
				}
			}
			return ""
		}
		if n.Kind != yaml.MappingNode {
			return ""
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := append(append([]string{}, prefix...), k.Value)
			if match(k, val) {
				return strings.Join(p, ".")
			}
			if r := walk(val, p); r != "" {
				return r
			}
		}
		return ""
	}
	return walk(n, nil)
}

var unknownFieldRE = regexp.MustCompile(`line (\d+): field (\S+) not found in type config\.(\w+)`)
var lineRE = regexp.MustCompile(`line (\d+): (.*)`)

// allowed lists the YAML keys of the config type named typ.
func allowed(typ string) []string {
	types := map[string]reflect.Type{
		"File": reflect.TypeOf(File{}), "ServiceRef": reflect.TypeOf(ServiceRef{}),
		"Environment": reflect.TypeOf(Environment{}), "Health": reflect.TypeOf(Health{}),
		"Probe": reflect.TypeOf(Probe{}), "HTTPProbe": reflect.TypeOf(HTTPProbe{}),
		"TCPProbe": reflect.TypeOf(TCPProbe{}), "ExecProbe": reflect.TypeOf(ExecProbe{}),
		"Release": reflect.TypeOf(Release{}), "Build": reflect.TypeOf(Build{}),
		"buildFields":      reflect.TypeOf(Build{}),
		"Registry":         reflect.TypeOf(Registry{}),
		"Lint":             reflect.TypeOf(Lint{}),
		"Approvals":        reflect.TypeOf(Approvals{}),
		"Analysis":         reflect.TypeOf(Analysis{}),
		"Check":            reflect.TypeOf(Check{}),
		"Notify":           reflect.TypeOf(Notify{}),
		"Route":            reflect.TypeOf(Route{}),
		"Retry":            reflect.TypeOf(Retry{}),
		"Receiver":         reflect.TypeOf(Receiver{}),
		"receiverFields":   reflect.TypeOf(Receiver{}),
		"Gates":            reflect.TypeOf(Gates{}),
		"Scan":             reflect.TypeOf(Scan{}),
		"ProxyRoute":       reflect.TypeOf(ProxyRoute{}),
		"proxyRouteFields": reflect.TypeOf(ProxyRoute{}),
		"Proxy":            reflect.TypeOf(Proxy{}),
		"ProxyTLS":         reflect.TypeOf(ProxyTLS{}),
		"Canary":           reflect.TypeOf(Canary{}),
		"CanaryStep":       reflect.TypeOf(CanaryStep{}),
		"Sticky":           reflect.TypeOf(Sticky{}),
		"CanaryAbort":      reflect.TypeOf(CanaryAbort{}),
	}
	t, ok := types[typ]
	if !ok {
		return nil
	}
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if k := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}

// yamlError turns yaml.v3's messages into ones that say where and what to do.
func yamlError(path string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if m := unknownFieldRE.FindStringSubmatch(msg); m != nil {
			var line int
			fmt.Sscan(m[1], &line)
			what := strings.ToLower(strings.TrimSuffix(m[3], "Fields"))
			return &Error{File: path, Line: line, Field: m[2],
				Msg: fmt.Sprintf("unknown field in %s; allowed: %s", what, strings.Join(allowed(m[3]), ", "))}
		}
		if m := lineRE.FindStringSubmatch(msg); m != nil {
			var line int
			fmt.Sscan(m[1], &line)
			return &Error{File: path, Line: line, Msg: strings.ReplaceAll(m[2], "config.", "")}
		}
		return &Error{File: path, Msg: msg}
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		var line int
		fmt.Sscan(m[1], &line)
		return &Error{File: path, Line: line, Msg: "not valid YAML: " + m[2]}
	}
	return &Error{File: path, Msg: "not valid YAML: " + msg}
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func contains[T comparable](l []T, v T) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}
