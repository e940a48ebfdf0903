package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// TestProxyFollowsRestartedContainer: Docker restarts a routed container
// (as its restart policy or a host reboot would) and gives it a new
// loopback port; `gantry proxy` sees the start and points the route at it,
// with no gantry command run.
func TestProxyFollowsRestartedContainer(t *testing.T) {
	p := newProject(t, "follow", gantryRouted, webRouted)
	p.startProxy()
	p.deploy(0, "staging", "--release", "1.0.0")
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("through the proxy: %q", v)
	}
	ctx := context.Background()
	cs, err := p.c.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "io.gantry.project="+p.name))})
	if err != nil || len(cs) != 1 {
		t.Fatalf("the project's containers: %v %d", err, len(cs))
	}
	port := func() string {
		ci, err := p.c.ContainerInspect(ctx, cs[0].ID)
		if err != nil || ci.NetworkSettings == nil || len(ci.NetworkSettings.Ports["8080/tcp"]) == 0 {
			t.Fatalf("the container's published port: %v", err)
		}
		return ci.NetworkSettings.Ports["8080/tcp"][0].HostPort
	}
	before := port()
	if err := p.c.ContainerRestart(ctx, cs[0].ID, container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if after := port(); after == before {
		t.Fatalf("Docker gave the restarted container its old port %s; the test cannot tell that the route followed", after)
	}
	waitFor(t, 15*time.Second, "the proxy to reach the restarted container", func() bool {
		v, err := get(fmt.Sprintf("http://127.0.0.1:%d/version", p.port))
		return err == nil && v == "1.0.0"
	})
}
