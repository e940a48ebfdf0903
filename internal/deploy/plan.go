package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
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
// every secret to a file, every service to its strategy. It changes nothing
// on the host but pulling missing images and writing secret files into the
// state directory.
func (e *Engine) Plan(ctx context.Context, m *config.Model, release string, images map[string]string) (*runtime.Plan, error) {
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
		mounts, err := e.secrets(m, name)
		if err != nil {
			return nil, err
		}
		s.Secrets = mounts
		p.Services[name] = s
	}
	if release == "" {
		p.Release = defaultRelease(p)
	}
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

// secrets turns a service's compose secrets into files to mount read-only
// at /run/secrets/<name>. Values from the environment are written into the
// state directory (files readable by the container user, in a 0700 directory): they never go
// into the container's environment, labels or the store.
func (e *Engine) secrets(m *config.Model, service string) ([]runtime.SecretMount, error) {
	sc := m.Compose.Services[service]
	if len(sc.Secrets) > 0 && !e.rt.Local() {
		return nil, inputError("service %s uses secrets, which gantry bind-mounts from files on this machine; the Docker host %s is remote, so it would not see them. Run gantry on that host for now (remote secrets come with Swarm targets)", service, e.rt.Host())
	}
	var out []runtime.SecretMount
	for _, ref := range sc.Secrets {
		def, ok := m.Compose.Secrets[ref.Source]
		if !ok {
			return nil, inputError("service %s uses secret %q, which is not declared under the top-level secrets:", service, ref.Source)
		}
		target := ref.Target
		if target == "" {
			target = ref.Source
		}
		if !path.IsAbs(target) {
			target = "/run/secrets/" + target
		}
		mnt := runtime.SecretMount{Name: ref.Source, Target: target}
		switch {
		case bool(def.External) && e.orchestrated():
			// A secret the swarm already holds, by its own name.
			mnt.External, mnt.Source = true, def.Name
			if mnt.Source == "" {
				mnt.Source = ref.Source
			}
		case bool(def.External):
			return nil, inputError("secret %s is external: external secrets live in Docker Swarm; on a Docker host use `file:` or `environment:`", ref.Source)
		case def.File != "":
			st, err := os.Stat(def.File)
			if err != nil {
				return nil, inputError("secret %s: file %s does not exist; create it or fix secrets.%s.file in the compose file", ref.Source, def.File, ref.Source)
			}
			if st.IsDir() {
				return nil, inputError("secret %s: %s is a directory; point it at a file", ref.Source, def.File)
			}
			mnt.Source = def.File
		case def.Environment != "":
			val, ok := m.Compose.Environment[def.Environment]
			if !ok {
				return nil, inputError("secret %s: environment variable %s is not set; export it or put it in .env", ref.Source, def.Environment)
			}
			f, err := e.writeSecret(m.Compose.Name, ref.Source, val)
			if err != nil {
				return nil, err
			}
			mnt.Source = f
		case def.Content != "":
			f, err := e.writeSecret(m.Compose.Name, ref.Source, def.Content)
			if err != nil {
				return nil, err
			}
			mnt.Source = f
		default:
			return nil, inputError("secret %s has no source; give it `file:` or `environment:`", ref.Source)
		}
		out = append(out, mnt)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out, nil
}

// writeSecret stores a secret value under a name derived from its content,
// so that each release keeps mounting the value it was deployed with.
func (e *Engine) writeSecret(project, name, value string) (string, error) {
	dir := filepath.Join(e.stateDir, "secrets", project)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("secret %s: %w", name, err)
	}
	sum := sha256.Sum256([]byte(value))
	f := filepath.Join(dir, name+"-"+hex.EncodeToString(sum[:])[:16])
	if _, err := os.Stat(f); err == nil {
		return f, nil
	}
	tmp := f + ".tmp"
	// 0444: the container's user is rarely root; the 0700 directory keeps
	// other users of the host out.
	if err := os.WriteFile(tmp, []byte(value), 0o444); err != nil {
		return "", fmt.Errorf("secret %s: %w", name, err)
	}
	return f, os.Rename(tmp, f)
}

// encodePlan stores a plan without its deployment ID (that is the row's).
func encodePlan(p *runtime.Plan) (json.RawMessage, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	return b, nil
}

func decodePlan(raw json.RawMessage, id int64) (*runtime.Plan, error) {
	var p runtime.Plan
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("decode plan of deployment %d: %w", id, err)
	}
	p.ID = id
	return &p, nil
}
