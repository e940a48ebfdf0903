package swarm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/runtime"
	gswarm "github.com/gantryhq/gantry/internal/swarm"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// translatePlan makes the plan the engine would make of
// testdata/translate for production, without any Docker: images pinned to
// made-up digests, the secret read from its file.
func translatePlan(t *testing.T) (*runtime.Plan, *config.Model) {
	t.Helper()
	f, err := config.Load(filepath.Join("testdata", "translate", "gantry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Resolve(context.Background(), "production")
	if err != nil {
		t.Fatal(err)
	}
	p := &runtime.Plan{Project: "shop", Env: "production", Release: "1.4.0", ID: 7, ComposeName: m.Compose.Name, Order: m.Order,
		Services: map[string]*runtime.Service{}, Networks: m.Compose.Networks, Volumes: m.Compose.Volumes,
		Configs: map[string]runtime.ConfigFile{"settings": {Content: m.Compose.Configs["settings"].Content}}}
	for _, name := range m.Order {
		sc := m.Compose.Services[name]
		s := &runtime.Service{Name: name, Config: sc, ImageRef: sc.Image, ImageID: sc.Image + "@sha256:" + fmt64(name)}
		for _, ref := range sc.Secrets {
			file := m.Compose.Secrets[ref.Source].File
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			// The engine's fingerprint is keyed; a plain hash stands in.
			sum := sha256.Sum256(b)
			s.Secrets = append(s.Secrets, runtime.SecretMount{Name: ref.Source, File: file, Target: "/run/secrets/" + ref.Source,
				Value: b, Fingerprint: hex.EncodeToString(sum[:8]), Mode: 0o444})
		}
		p.Services[name] = s
	}
	return p, m
}

func fmt64(s string) string {
	b := bytes.Repeat([]byte(s), 64)
	return string(bytes.ToLower(b[:64]))
}

// TestSpecGolden: the Swarm service specs of a rich compose model, as
// gantry sends them (secret and config IDs aside).
func TestSpecGolden(t *testing.T) {
	p, m := translatePlan(t)
	ro := runtime.Rollout{Monitor: m.Env.Health.MinHealthy.D(), Order: string(m.Env.Strategy)}
	var out bytes.Buffer
	for _, name := range p.Order {
		spec, err := gswarm.Spec(p, name, ro)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := json.MarshalIndent(spec, "", "  ")
		out.WriteString("# " + name + "\n")
		out.Write(b)
		out.WriteString("\n")
	}
	golden := filepath.Join("testdata", "translate", "specs.golden")
	if *update {
		os.WriteFile(golden, out.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("specs differ from %s (go test -update rewrites it); got:\n%s", golden, out.String())
	}
}

// TestSpecStable: the same plan gives the same spec hashes, a new
// deployment or secret value new ones.
func TestSpecStable(t *testing.T) {
	p, _ := translatePlan(t)
	ro := runtime.Rollout{Monitor: 7e9}
	a, _ := gswarm.Spec(p, "web", ro)
	b, _ := gswarm.Spec(p, "web", ro)
	if a.Labels[gswarm.LabelSpec] != b.Labels[gswarm.LabelSpec] {
		t.Fatal("two translations of one plan differ")
	}
	p.ID = 8
	c, _ := gswarm.Spec(p, "web", ro)
	if c.Labels[gswarm.LabelTasks] == a.Labels[gswarm.LabelTasks] {
		t.Error("another deployment has the same task hash: its tasks would not be replaced")
	}
	p.Services["web"].Secrets[0].Value = runtime.Secret("another value")
	p.Services["web"].Secrets[0].Fingerprint = "0123456789abcdef"
	d, _ := gswarm.Spec(p, "web", ro)
	if d.TaskTemplate.ContainerSpec.Secrets[0].SecretName == a.TaskTemplate.ContainerSpec.Secrets[0].SecretName {
		t.Error("a new secret value kept the secret's name: the old release would lose its value")
	}
}

func TestSpecUnsupported(t *testing.T) {
	p, _ := translatePlan(t)
	web := p.Services["web"]
	web.Config.Restart = "sometimes"
	web.Config.Deploy.RestartPolicy = nil
	_, err := gswarm.Spec(p, "web", runtime.Rollout{})
	if !errors.Is(err, runtime.ErrUnsupported) {
		t.Errorf("restart: sometimes: err = %v, want ErrUnsupported", err)
	}
}

// A secret's owner and mode come from the plan's mount, which keeps what
// compose said (the stored compose config loses its mode in JSON).
func TestSpecSecretFile(t *testing.T) {
	p, _ := translatePlan(t)
	m := &p.Services["web"].Secrets[0]
	m.UID, m.GID, m.Mode = 1000, 4242, 0o440
	spec, err := gswarm.Spec(p, "web", runtime.Rollout{Monitor: 7e9})
	if err != nil {
		t.Fatal(err)
	}
	f := spec.TaskTemplate.ContainerSpec.Secrets[0].File
	if f.UID != "1000" || f.GID != "4242" || f.Mode != 0o440 || f.Name != "token" {
		t.Fatalf("secret file %+v, want token 1000:4242 0440", f)
	}
}
