package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/runtime"
)

// ErrInput marks errors in what the user asked for: nothing was changed.
var ErrInput = errors.New("invalid input")

// inputError wraps a message as bad input.
func inputError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInput, fmt.Sprintf(format, args...))
}

// ParseImages reads --image svc=ref flags.
func ParseImages(flags []string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range flags {
		svc, ref, ok := strings.Cut(f, "=")
		if !ok || svc == "" || ref == "" {
			return nil, inputError("--image %q: write it as SERVICE=IMAGE, for example --image web=registry.example.com/shop/web:1.4.0", f)
		}
		out[svc] = ref
	}
	return out, nil
}

// Plan resolves a model into a plan: every image to its immutable ID,
// every secret to its source, owner and mode (its value read, kept in
// memory and out of the encoded plan), every service to its strategy. It
// changes nothing on the host but pulling missing images.
func (e *Engine) Plan(ctx context.Context, m *config.Model, release string, images map[string]string) (_ *runtime.Plan, err error) {
	defer func() { err = e.redact.Error(err) }()
	p := &runtime.Plan{
		Project:     m.File.Project,
		Env:         m.Env.Name,
		Release:     release,
		ComposeName: m.Compose.Name,
		Order:       m.Order,
		Services:    map[string]*runtime.Service{},
		Networks:    map[string]types.NetworkConfig{},
		Volumes:     map[string]types.VolumeConfig{},
	}
	if len(release) > 128 || strings.ContainsFunc(release, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, inputError("--release %q: a release name is at most 128 characters, without spaces or control characters (for example 1.4.0)", release)
	}
	for svc := range images {
		if _, ok := m.Compose.Services[svc]; !ok {
			return nil, inputError("--image %s=...: no service %q in %s; known: %s", svc, svc, m.Env.Name, strings.Join(m.Order, ", "))
		}
	}
	// Secrets first: from here on every error is redacted with their
	// values known, and a missing source stops the deploy before any pull.
	read, err := e.readSecrets(m)
	if err != nil {
		return nil, err
	}
	for k, n := range m.Compose.Networks {
		p.Networks[k] = n
	}
	for k, v := range m.Compose.Volumes {
		p.Volumes[k] = v
	}
	for _, name := range m.Order {
		sc := m.Compose.Services[name]
		if r, ok := images[name]; ok {
			sc.Image = r
		}
		if !e.orchestrated() && (sc.Scale != nil && *sc.Scale > 1 || sc.Deploy != nil && sc.Deploy.Replicas != nil && *sc.Deploy.Replicas > 1) {
			e.log.Warn("replicas above 1 are not run on a Docker host yet; running one container", "service", name)
		}
		img, err := e.rt.ResolveImage(ctx, sc.Image)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", name, err)
		}
		s := &runtime.Service{Name: name, Config: sc, ImageRef: sc.Image, ImageID: img.ID, Digest: img.Digest, Job: m.IsJob(name)}
		s.StopFirst = m.Strategy(name) == config.StrategyStopFirst
		if err := e.planRoute(m, s); err != nil {
			return nil, err
		}
		if m.Strategy(name) == config.StrategyStartFirst && m.FixedHostPort(name) {
			e.report.Note(fmt.Sprintf("warning: %s publishes a fixed host port but strategy is start-first: the new container cannot bind it while the old one runs", name))
		}
		mounts, err := e.secrets(ctx, m, name, img, read)
		if err != nil {
			return nil, err
		}
		s.Secrets = mounts
		// The mounts carry each secret's mode; compose's FileMode encodes
		// to JSON as a string it cannot decode again, so the stored
		// compose config goes without it.
		s.Config.Secrets = append([]types.ServiceSecretConfig(nil), s.Config.Secrets...)
		for i := range s.Config.Secrets {
			s.Config.Secrets[i].Mode = nil
		}
		p.Services[name] = s
	}
	if release == "" {
		p.Release = defaultRelease(p)
	}
	e.warnSecretsInEnvironment(p)
	e.removeLegacySecrets(m.Compose.Name)
	if o, ok := e.rt.(runtime.Orchestrator); ok {
		if err := e.translate(ctx, o, m, p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// defaultRelease names a release after its images when the user gave no
// name: the same images always give the same name.
func defaultRelease(p *runtime.Plan) string {
	h := sha256.New()
	for _, n := range p.Order {
		fmt.Fprintf(h, "%s=%s\n", n, p.Services[n].ImageID)
	}
	return "r-" + hex.EncodeToString(h.Sum(nil))[:10]
}

// encodePlan stores a plan without its deployment ID (that is the row's).
func encodePlan(p *runtime.Plan) (json.RawMessage, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	return b, nil
}

// DecodePlan reads the plan stored with deployment id.
func DecodePlan(raw json.RawMessage, id int64) (*runtime.Plan, error) {
	raw, err := numericFileModes(raw)
	if err != nil {
		return nil, fmt.Errorf("decode plan of deployment %d: %w", id, err)
	}
	var p runtime.Plan
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("decode plan of deployment %d: %w", id, err)
	}
	p.ID = id
	return &p, nil
}

// numericFileModes turns the file modes of a stored plan's configs and
// secrets back into numbers. compose-go writes a FileMode to JSON as a
// quoted octal string ("0440") and has no way to read that back, so a plan
// with a `mode:` on a service's config could not be decoded again (for a
// rollback, a recovery or status).
func numericFileModes(raw json.RawMessage) (json.RawMessage, error) {
	if !bytes.Contains(raw, []byte(`"mode":"`)) {
		return raw, nil
	}
	var plan map[string]any
	if err := json.Unmarshal(raw, &plan); err != nil {
		return nil, err
	}
	services, _ := plan["services"].(map[string]any)
	for name, s := range services {
		svc, _ := s.(map[string]any)
		cfg, _ := svc["config"].(map[string]any)
		for _, key := range []string{"configs", "secrets"} {
			refs, _ := cfg[key].([]any)
			for _, r := range refs {
				ref, _ := r.(map[string]any)
				mode, ok := ref["mode"].(string)
				if !ok {
					continue
				}
				n, err := strconv.ParseInt(mode, 8, 64)
				if err != nil {
					return nil, fmt.Errorf("service %s: %s mode %q is not an octal file mode", name, key, mode)
				}
				ref["mode"] = n
			}
		}
	}
	return json.Marshal(plan)
}
