package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSwarmTarget(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "good.swarm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, host := range map[string]string{"staging": "tcp://manager.example.com:2376", "production": "ssh://deploy@manager.example.com"} {
		e := f.Environments[name]
		if !e.IsSwarm() || e.Host != host {
			t.Errorf("%s: swarm %t, host %q; want swarm at %s", name, e.IsSwarm(), e.Host, host)
		}
	}
	f, err = Load(filepath.Join("testdata", "good.minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if e := f.Environments["staging"]; e.IsSwarm() || e.Target != TargetDocker {
		t.Errorf("an environment without target runs on %q, want docker", e.Target)
	}
}

// TestSwarmProblems: a swarm environment refuses, while it resolves, what
// Swarm cannot run, each problem with its field and what to do.
func TestSwarmProblems(t *testing.T) {
	tests := map[string]struct {
		compose string
		field   string
		msg     []string
	}{
		"ok": {compose: `services:
  web:
    image: example/web:1
    ports: ["8080:8080"]
    deploy: { replicas: 3, placement: { constraints: [node.role==worker] } }
    networks: [front]
  host:
    image: example/agent:1
    network_mode: host
networks:
  front: { driver: overlay }
`},
		"build without image": {compose: "services:\n  web:\n    build: .\n",
			field: "services.web.build", msg: []string{"pull images from a registry", "services.web.image"}},
		"host network with ports": {compose: "services:\n  web:\n    image: x\n    network_mode: host\n    ports: [\"80:80\"]\n",
			field: "services.web.network_mode", msg: []string{"network_mode: host with published ports", "remove the ports"}},
		"network mode of a service": {compose: "services:\n  web:\n    image: x\n    network_mode: service:db\n  db:\n    image: y\n",
			field: "services.web.network_mode", msg: []string{"network_mode: service:db has no Swarm equivalent"}},
		"port on one address": {compose: "services:\n  web:\n    image: x\n    ports: [\"127.0.0.1:8080:80\"]\n",
			field: "services.web.ports[0]", msg: []string{"127.0.0.1:8080:80 binds one address", "every interface of every node"}},
		"port range": {compose: "services:\n  web:\n    image: x\n    ports: [\"8080-8081:80\"]\n",
			field: "services.web.ports[0]", msg: []string{"published range 8080-8081"}},
		"privileged": {compose: "services:\n  web:\n    image: x\n    privileged: true\n",
			field: "services.web.privileged", msg: []string{"cannot run privileged", "cap_add"}},
		"devices": {compose: "services:\n  web:\n    image: x\n    devices: [/dev/fuse]\n",
			field: "services.web.devices", msg: []string{"cannot map host devices"}},
		"container name": {compose: "services:\n  web:\n    image: x\n    container_name: web1\n",
			field: "services.web.container_name", msg: []string{"Swarm names each task itself"}},
		"links": {compose: "services:\n  web:\n    image: x\n    links: [db]\n  db:\n    image: y\n",
			field: "services.web.links", msg: []string{"links do not exist on a swarm"}},
		"bridge network": {compose: "services:\n  web:\n    image: x\n    networks: [back]\nnetworks:\n  back: { driver: bridge }\n",
			field: "networks.back.driver", msg: []string{"driver bridge", "overlay"}},
		"pid": {compose: "services:\n  web:\n    image: x\n    pid: host\n",
			field: "services.web.pid", msg: []string{"pid: host has no Swarm equivalent"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(tt.compose), 0o644)
			os.WriteFile(filepath.Join(dir, "gantry.yaml"), []byte("project: shop\nenvironments:\n  staging:\n    swarm: unix:///var/run/docker.sock\n  local: {}\n"), 0o644)
			f, err := Load(filepath.Join(dir, "gantry.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.Resolve(context.Background(), "staging")
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Resolve: err = %v, want a config error", err)
			}
			if ce.Field != tt.field || ce.File != "compose.yaml" {
				t.Errorf("error at %s: %s, want %s: %s", ce.File, ce.Field, "compose.yaml", tt.field)
			}
			for _, m := range tt.msg {
				if !strings.Contains(ce.Msg, m) {
					t.Errorf("message %q lacks %q", ce.Msg, m)
				}
			}
			// The same compose model is fine on a Docker host, unless it
			// lacks an image.
			if _, err := f.Resolve(context.Background(), "local"); err != nil && !strings.Contains(name, "image") {
				t.Errorf("on a Docker host: %v", err)
			}
		})
	}
}
