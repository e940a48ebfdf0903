package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

const alertGantry = `project: PROJECT
compose: compose.yaml
environments:
  staging:
    health: { window: 30s, min_healthy: 1s }
notify:
  routes:
    - { to: [hook] }
  retry: { initial: 100ms, max: 500ms, attempts: 3 }
  receivers:
    hook: { type: webhook, url_file: hook_url }
`

// messages is a webhook receiver of the test that keeps the messages.
type messages struct {
	mu  sync.Mutex
	got []map[string]any
}

func (m *messages) find(name, status string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, g := range m.got {
		a, _ := g["alert"].(map[string]any)
		if a["name"] == name && g["status"] == status {
			return true
		}
	}
	return false
}

// TestAlertsFromTheServer: through the server, a deploy that rolls back
// raises GantryRolledBack; a service of the serving release that stops
// raises GantryServiceUnhealthy, resolved once it runs again; the API
// lists the alerts and acknowledges one.
func TestAlertsFromTheServer(t *testing.T) {
	msgs := &messages{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &body)
		msgs.mu.Lock()
		msgs.got = append(msgs.got, body)
		msgs.mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	// A health check that tolerates a busy machine: this test is about alerts.
	compose := strings.Replace(fixtureCompose, "timeout: 3s\n      retries: 2", "timeout: 5s\n      retries: 5", 1)
	if compose == fixtureCompose {
		t.Fatal("the fixture's health check changed; adjust this test")
	}
	f := newFixtureWith(t, alertGantry, "", map[string]string{"hook_url": hook.URL + "/hooks/secret-path-5e1f", "compose.yaml": compose})
	if d := f.deploy("staging", `{"release":"1.0.0"}`); d.State != store.Succeeded {
		t.Fatalf("deploy: %s %s", d.State, d.Reason)
	}
	bad := f.deploy("staging", `{"release":"2.0.0","images":{"web":"`+testenv.Image(t, testenv.Unhealthy)+`"}}`)
	if bad.State != store.RolledBack {
		t.Fatalf("deploy of the unhealthy image: %s %s", bad.State, bad.Reason)
	}
	testenv.WaitFor(t, 20*time.Second, "GantryRolledBack at the webhook", func() bool { return msgs.find("GantryRolledBack", "firing") })

	// The serving container stops: the watcher sees it, the alert fires.
	c := testenv.Docker(t)
	cs, err := c.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "io.gantry.project="+f.project))})
	if err != nil || len(cs) != 1 {
		t.Fatalf("containers: %v %v", cs, err)
	}
	if err := c.ContainerStop(context.Background(), cs[0].ID, container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "GantryServiceUnhealthy firing", func() bool { return msgs.find("GantryServiceUnhealthy", "firing") })
	if err := c.ContainerStart(context.Background(), cs[0].ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "GantryServiceUnhealthy resolved", func() bool { return msgs.find("GantryServiceUnhealthy", "resolved") })

	var as []store.Alert
	r := f.get("viewer", "/api/v1/alerts?all=1")
	r.json(t, &as)
	names := map[string]bool{}
	for _, a := range as {
		names[a.Name] = true
	}
	if !names["GantryRolledBack"] || !names["GantryServiceUnhealthy"] {
		t.Fatalf("alerts: %s", r.body)
	}
	ack := f.post("editor", "/api/v1/alerts/1/ack", "")
	if ack.status != http.StatusOK || !strings.Contains(string(ack.body), `"acked_by":"editor"`) {
		t.Errorf("ack: %d %s", ack.status, ack.body)
	}
	if strings.Contains(string(r.body), "secret-path-5e1f") || strings.Contains(f.logs.String(), "secret-path-5e1f") {
		t.Error("the webhook's URL reached the API or the log")
	}
}
