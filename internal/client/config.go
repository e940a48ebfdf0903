package client

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"go.yaml.in/yaml/v3"
)

// Context is a named server the CLI can talk to.
type Context struct {
	Server      string `yaml:"server" json:"server"`
	Token       string `yaml:"token" json:"-"`
	CAFile      string `yaml:"ca,omitempty" json:"ca,omitempty"`
	Fingerprint string `yaml:"fingerprint,omitempty" json:"fingerprint,omitempty"`
}

// Config is the user's ~/.config/gantry/config.yaml: contexts and the one
// in use. It holds tokens, so it is written with mode 0600.
type Config struct {
	Current  string              `yaml:"current,omitempty"`
	Contexts map[string]*Context `yaml:"contexts"`
	path     string
}

// ConfigPath is $GANTRY_CONFIG, or gantry/config.yaml in the user's config
// directory ($XDG_CONFIG_HOME or ~/.config).
func ConfigPath() (string, error) {
	if p := os.Getenv("GANTRY_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no config directory for gantry contexts (%v); set GANTRY_CONFIG", err)
	}
	return filepath.Join(dir, "gantry", "config.yaml"), nil
}

// LoadConfig reads the config at path; a missing file is an empty config.
func LoadConfig(path string) (*Config, error) {
	c := &Config{Contexts: map[string]*Context{}, path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInput, path, err)
	}
	if c.Contexts == nil {
		c.Contexts = map[string]*Context{}
	}
	c.path = path
	return c, nil
}

// Save writes the config, readable by its owner only.
func (c *Config) Save() error {
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return err
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.path)
}

var contextName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Add checks and adds (or replaces) a context; the token is required and
// the server must be a URL the client accepts.
func (c *Config) Add(name string, ctx Context) error {
	if !contextName.MatchString(name) || name == "local" {
		return fmt.Errorf("%w: context name %q: use letters, digits, '.', '_' or '-' (and not local, which means no server)", ErrInput, name)
	}
	if _, err := New(Options{Server: ctx.Server, Token: ctx.Token, CAFile: ctx.CAFile, Fingerprint: ctx.Fingerprint}); err != nil {
		return err
	}
	if ctx.Fingerprint != "" {
		b, _ := ParseFingerprint(ctx.Fingerprint)
		ctx.Fingerprint = FormatFingerprint(b)
	}
	if ctx.CAFile != "" {
		if abs, err := filepath.Abs(ctx.CAFile); err == nil {
			ctx.CAFile = abs
		}
	}
	c.Contexts[name] = &ctx
	return nil
}

// Use makes name the current context; "local" means no server.
func (c *Config) Use(name string) error {
	if name == "local" {
		c.Current = ""
		return nil
	}
	if _, ok := c.Contexts[name]; !ok {
		return fmt.Errorf("%w: no context %q (there are: %v); add it with gantry context add", ErrInput, name, c.Names())
	}
	c.Current = name
	return nil
}

// Remove deletes a context.
func (c *Config) Remove(name string) error {
	if _, ok := c.Contexts[name]; !ok {
		return fmt.Errorf("%w: no context %q (there are: %v)", ErrInput, name, c.Names())
	}
	delete(c.Contexts, name)
	if c.Current == name {
		c.Current = ""
	}
	return nil
}

// Names lists the contexts, sorted.
func (c *Config) Names() []string {
	var out []string
	for n := range c.Contexts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// FromEnvironment returns the client the environment selects: GANTRY_SERVER
// (with GANTRY_TOKEN, GANTRY_CA or GANTRY_FINGERPRINT), else the context
// named by GANTRY_CONTEXT or the config's current one. It returns nil when
// none is set: local mode.
func FromEnvironment() (*Client, error) {
	if s := os.Getenv("GANTRY_SERVER"); s != "" {
		return New(Options{Server: s, Token: os.Getenv("GANTRY_TOKEN"), CAFile: os.Getenv("GANTRY_CA"), Fingerprint: os.Getenv("GANTRY_FINGERPRINT")})
	}
	name := os.Getenv("GANTRY_CONTEXT")
	if name == "local" {
		return nil, nil
	}
	path, err := ConfigPath()
	if err != nil {
		if name != "" {
			return nil, err
		}
		return nil, nil
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = cfg.Current
	}
	if name == "" {
		return nil, nil
	}
	ctx, ok := cfg.Contexts[name]
	if !ok {
		return nil, fmt.Errorf("%w: context %q is not in %s (there are: %v)", ErrInput, name, path, cfg.Names())
	}
	return New(Options{Server: ctx.Server, Token: ctx.Token, CAFile: ctx.CAFile, Fingerprint: ctx.Fingerprint})
}
