package deploy

import (
	"encoding/json"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gantryhq/gantry/internal/runtime"
)

// TestDecodePlanFileModes: a plan whose service has a config (or secret)
// with a mode, stored as JSON, decodes again with the same mode.
func TestDecodePlanFileModes(t *testing.T) {
	cm, sm := types.FileMode(0o440), types.FileMode(0o400)
	s := &runtime.Service{Name: "web"}
	s.Config.Configs = []types.ServiceConfigObjConfig{{Source: "nginx", Target: "/etc/nginx.conf", Mode: &cm}, {Source: "plain"}}
	s.Config.Secrets = []types.ServiceSecretConfig{{Source: "token", Mode: &sm}}
	raw, err := json.Marshal(runtime.Plan{Services: map[string]*runtime.Service{"web": s}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodePlan(raw, 7)
	if err != nil {
		t.Fatalf("decode a stored plan with file modes: %v", err)
	}
	got := p.Services["web"].Config
	if m := got.Configs[0].Mode; m == nil || *m != cm {
		t.Errorf("config mode %v, want 0440", m)
	}
	if got.Configs[1].Mode != nil {
		t.Errorf("a config without mode got %v", *got.Configs[1].Mode)
	}
	if m := got.Secrets[0].Mode; m == nil || *m != sm {
		t.Errorf("secret mode %v, want 0400", m)
	}
	if p.ID != 7 {
		t.Errorf("plan ID %d", p.ID)
	}

	bad := []byte(`{"services":{"web":{"config":{"configs":[{"source":"c","mode":"0x9"}]}}}}`)
	if _, err := DecodePlan(bad, 8); err == nil {
		t.Error("a mode that is not octal decoded")
	}
}
