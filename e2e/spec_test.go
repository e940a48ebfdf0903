package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"

	"github.com/gantryhq/gantry/internal/testenv"
)

// What the compose file says is what runs: the container gantry creates
// carries the compose settings and gantry's labels, on a network of its own.
func TestContainerMatchesComposeAndIsLabelled(t *testing.T) {
	compose := `
services:
  web:
    image: IMG_healthy
    user: "65532:65532"
    read_only: true
    tmpfs: ["/tmp:size=1m"]
    restart: on-failure:3
    environment:
      GREETING: hello
    labels:
      team: shop
    ports: ["127.0.0.1:PORT:8080"]
    volumes: ["cache:/cache", "./static:/static:ro"]
    healthcheck: { test: ["CMD", "/app", "check"], interval: 500ms, timeout: 3s, retries: 2 }
    stop_grace_period: 3s
volumes:
  cache: {}
`
	p := newProject(t, "spec", gantryStaging, compose)
	if err := mkdir(p.dir + "/static"); err != nil {
		t.Fatal(err)
	}
	p.deploy(0, "staging", "--release", "1.0.0")
	cs := p.containers()
	if len(cs) != 1 {
		t.Fatalf("containers: %d", len(cs))
	}
	ctx := context.Background()
	c, err := p.c.ContainerInspect(ctx, cs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{
		"io.gantry.managed": "true", "io.gantry.project": p.name, "io.gantry.env": "staging",
		"io.gantry.service": "web", "io.gantry.release": "1.0.0", "io.gantry.deployment": "1",
		"io.gantry.image": testenv.Image(t, testenv.Healthy), "team": "shop",
	}
	for k, v := range wantLabels {
		if got := c.Config.Labels[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}
	if !strings.HasPrefix(c.Image, "sha256:") || c.Config.Image != c.Image {
		t.Errorf("the container must run the resolved image ID, got config %q image %q", c.Config.Image, c.Image)
	}
	if c.Config.User != "65532:65532" || !c.HostConfig.ReadonlyRootfs {
		t.Errorf("user %q read-only %v", c.Config.User, c.HostConfig.ReadonlyRootfs)
	}
	if c.HostConfig.Tmpfs["/tmp"] != "size=1m" {
		t.Errorf("tmpfs: %v", c.HostConfig.Tmpfs)
	}
	if c.HostConfig.RestartPolicy.Name != "on-failure" || c.HostConfig.RestartPolicy.MaximumRetryCount != 3 {
		t.Errorf("restart policy: %+v", c.HostConfig.RestartPolicy)
	}
	if c.Config.StopTimeout == nil || *c.Config.StopTimeout != 3 {
		t.Errorf("stop timeout: %v", c.Config.StopTimeout)
	}
	found := false
	for _, e := range c.Config.Env {
		found = found || e == "GREETING=hello"
	}
	if !found {
		t.Errorf("environment: %v", c.Config.Env)
	}
	for _, b := range c.HostConfig.PortBindings["8080/tcp"] {
		if b.HostIP != "127.0.0.1" {
			t.Errorf("port published on %q, want 127.0.0.1", b.HostIP)
		}
	}
	// Never the default bridge: the compose project's own network, with the
	// service name as an alias so other services find it.
	netName := p.name + "-staging_default"
	if string(c.HostConfig.NetworkMode) != netName {
		t.Errorf("network mode %q, want %q", c.HostConfig.NetworkMode, netName)
	}
	ep := c.NetworkSettings.Networks[netName]
	if ep == nil || !contains(ep.Aliases, "web") {
		t.Errorf("endpoint on %s: %+v", netName, ep)
	}
	if _, ok := c.NetworkSettings.Networks["bridge"]; ok {
		t.Errorf("container is on the default bridge")
	}
	mounts := map[string]string{}
	for _, m := range c.Mounts {
		mounts[m.Destination] = string(m.Type) + ":" + m.Name
	}
	if mounts["/cache"] != "volume:"+p.name+"-staging_cache" || !strings.HasPrefix(mounts["/static"], "bind:") {
		t.Errorf("mounts: %v", mounts)
	}
	// Networks and volumes are labelled for the project and environment.
	f := filters.NewArgs(filters.Arg("label", "io.gantry.project="+p.name), filters.Arg("label", "io.gantry.env=staging"))
	nets, _ := p.c.NetworkList(ctx, network.ListOptions{Filters: f})
	vols, _ := p.c.VolumeList(ctx, volume.ListOptions{Filters: f})
	if len(nets) != 1 || len(vols.Volumes) != 1 {
		t.Errorf("labelled networks %d, volumes %d; want 1 and 1", len(nets), len(vols.Volumes))
	}
}

// keep_releases bounds the stopped containers kept for rollback; a rollback
// to an older release re-creates its containers from the record.
func TestKeepReleasesAndRollbackToAPrunedRelease(t *testing.T) {
	gy := strings.Replace(gantryStaging, "    health:", "    keep_releases: 1\n    health:", 1)
	p := newProject(t, "keep", gy, webFixed)
	p.deploy(0, "staging", "--release", "1.0.0")
	p.deploy(0, "staging", "--release", "2.0.0", "--image", "web=IMG_healthy-v2")
	p.deploy(0, "staging", "--release", "3.0.0", "--image", "web=IMG_healthy")
	var releases []string
	for _, c := range p.containers() {
		releases = append(releases, c.Labels["io.gantry.release"]+":"+c.State)
	}
	if got := strings.Join(sortStrings(releases), " "); got != "2.0.0:exited 3.0.0:running" {
		t.Fatalf("with keep_releases 1 want the serving release and one kept, got %s", got)
	}
	r := p.run("rollback", "staging", "--to", "1.0.0", "--output", "json")
	if r.code != 0 {
		t.Fatalf("rollback to a pruned release: %s", r)
	}
	if run := p.running(); len(run) != 1 || run[0] != "web@1.0.0" {
		t.Fatalf("running after the rollback: %v", run)
	}
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("serving %q, want 1.0.0", v)
	}
}

// A rollback to a release whose image is gone from the host is refused
// before anything changes, and says how to get the image back.
func TestRollbackRefusedWhenTheImageIsGone(t *testing.T) {
	gy := strings.Replace(gantryStaging, "    health:", "    keep_releases: 0\n    health:", 1)
	p := newProject(t, "gone", gy, webFixed)
	old := testenv.DerivedImage(t, testenv.Image(t, testenv.Healthy), "gantry-test/derived:"+p.name)
	p.deploy(0, "staging", "--release", "1.0.0", "--image", "web="+old)
	p.deploy(0, "staging", "--release", "2.0.0", "--image", "web=IMG_healthy-v2")
	ctx := context.Background()
	if _, err := p.c.ImageRemove(ctx, old, image.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	before := p.snapshot()
	r := p.run("rollback", "staging")
	if r.code != 2 || !strings.Contains(r.stderr, "no longer on") || !strings.Contains(r.stderr, "docker pull "+old) {
		t.Fatalf("rollback to a release whose image is gone: %s", r)
	}
	if after := p.snapshot(); after != before {
		t.Fatalf("a refused rollback changed containers:\n%s\n%s", before, after)
	}
	if v := p.version(); v != "2.0.0" {
		t.Fatalf("serving %q, want 2.0.0", v)
	}
}
