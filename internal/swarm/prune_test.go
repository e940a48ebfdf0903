package swarm_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

const secretAndConfig = `services:
  web:
    image: placeholder
    healthcheck: { test: [CMD, /app, check], interval: 1s, timeout: 3s, retries: 3 }
    secrets: [token]
    configs: [{ source: conf, target: /etc/app.conf }]
secrets:
  token: { environment: TOKEN }
configs:
  conf: { environment: CONF }
`

// TestPruneKeepsReleases: with keep_releases 1, a successful deploy removes
// the secrets and configs that neither the serving release nor the one
// before it uses, but never one another service on the swarm uses; a
// release whose secret was removed is refused by rollback --to, before
// anything changes, once its source holds another value; a kept one rolls
// back.
func TestPruneKeepsReleases(t *testing.T) {
	sc := testenv.Swarm(t)
	f := newFixture(t, sc, secretAndConfig)
	f.write("gantry.yaml", strings.Replace(strings.NewReplacer("PROJECT", f.project, "HOST", sc.Host).Replace(gantryYAML),
		"    health:", "    keep_releases: 1\n    health:", 1))
	ctx := context.Background()
	type objects struct{ secret, config string }
	deployed := map[string]objects{}
	ship := func(release, value string) {
		t.Helper()
		t.Setenv("TOKEN", "token-"+value)
		t.Setenv("CONF", "conf-"+value)
		res, err := f.deploy(release, map[string]string{"web": testenv.Healthy})
		if err != nil || res.State != store.Succeeded {
			t.Fatalf("deploy %s: %v (%+v)", release, err, res)
		}
		cs := f.service("web").Spec.TaskTemplate.ContainerSpec
		deployed[release] = objects{cs.Secrets[0].SecretName, cs.Configs[0].ConfigName}
	}
	secretThere := func(name string) bool {
		_, _, err := sc.Manager.SecretInspectWithRaw(ctx, name)
		if err != nil && !errdefs.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	configThere := func(name string) bool {
		_, _, err := sc.Manager.ConfigInspectWithRaw(ctx, name)
		if err != nil && !errdefs.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	expect := func(when string, want map[string]bool) {
		t.Helper()
		for release, o := range deployed {
			keep := want[release]
			if got := secretThere(o.secret); got != keep {
				t.Errorf("%s: secret %s of %s on the swarm: %t, want %t", when, o.secret, release, got, keep)
			}
			if got := configThere(o.config); got != keep {
				t.Errorf("%s: config %s of %s on the swarm: %t, want %t", when, o.config, release, got, keep)
			}
		}
	}

	ship("1.0.0", "one")
	// A service gantry did not make uses 1.0.0's secret.
	sec, _, err := sc.Manager.SecretInspectWithRaw(ctx, deployed["1.0.0"].secret)
	if err != nil {
		t.Fatal(err)
	}
	zero := uint64(0)
	outside, err := sc.Manager.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "gantry-test-outside-" + f.project, Labels: map[string]string{"io.gantry.test": "1"}},
		Mode:        swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &zero}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: f.images[testenv.Healthy],
			Secrets: []*swarm.SecretReference{{SecretID: sec.ID, SecretName: sec.Spec.Name,
				File: &swarm.SecretReferenceFileTarget{Name: "token", UID: "0", GID: "0", Mode: 0o444}}}}},
	}, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Manager.ServiceRemove(context.Background(), outside.ID) })

	ship("2.0.0", "two")
	expect("after 2.0.0", map[string]bool{"1.0.0": true, "2.0.0": true})
	ship("3.0.0", "three")
	// 1.0.0 is older than keep_releases: its config goes, its secret stays
	// while the other service uses it.
	if !secretThere(deployed["1.0.0"].secret) {
		t.Errorf("1.0.0's secret was removed though a service uses it")
	}
	if configThere(deployed["1.0.0"].config) {
		t.Errorf("1.0.0's config %s is still on the swarm after 3.0.0 with keep_releases 1", deployed["1.0.0"].config)
	}
	for _, r := range []string{"2.0.0", "3.0.0"} {
		if !secretThere(deployed[r].secret) || !configThere(deployed[r].config) {
			t.Errorf("after 3.0.0, the secret or config of the kept %s is gone", r)
		}
	}

	// The other service goes; the next successful deployment, a rollback
	// to the kept 2.0.0, removes 1.0.0's secret.
	if err := sc.Manager.ServiceRemove(ctx, outside.ID); err != nil {
		t.Fatal(err)
	}
	m, err := f.model()
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if res, err := f.eng.Rollback(rctx, f.project, m.Env, "2.0.0"); err != nil || res.State != store.Succeeded {
		t.Fatalf("rollback to the kept 2.0.0: %v (%+v)", err, res)
	}
	f.assertRelease("web", "2.0.0", 1)
	expect("after the rollback to 2.0.0", map[string]bool{"2.0.0": true, "3.0.0": true})

	// 1.0.0's secret is gone and TOKEN holds another value: refused, and
	// nothing changes.
	hist, _ := f.st.History(ctx, f.project, "staging", 0)
	_, err = f.eng.Rollback(rctx, f.project, m.Env, "1.0.0")
	if !errors.Is(err, deploy.ErrInput) || !strings.Contains(err.Error(), "is not on the swarm") || !strings.Contains(err.Error(), "another value") {
		t.Fatalf("rollback to 1.0.0, whose secret was pruned and whose source changed: err = %v, want bad input saying so", err)
	}
	t.Logf("refused: %v", err)
	if strings.Contains(err.Error(), "token-") {
		t.Errorf("the refusal shows a secret value: %v", err)
	}
	f.assertRelease("web", "2.0.0", 1)
	if after, _ := f.st.History(ctx, f.project, "staging", 0); len(after) != len(hist) {
		t.Errorf("the refused rollback recorded a deployment (%d, were %d)", len(after), len(hist))
	}
}
