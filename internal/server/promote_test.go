package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/testenv"
	"strings"
	"sync"
	"testing"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/promote"
	"github.com/gantryhq/gantry/internal/store"
)

const protectedGantry = `project: PROJECT
compose: compose.yaml
environments:
  staging:
    health: { window: 30s, min_healthy: 1s }
  production:
    compose_files: [compose.yaml, compose.production.yaml]
    health: { window: 30s, min_healthy: 1s }
    protected: true
    requires: [staging]
    approvals: { required: REQUIRED }
`

const productionPort = `services:
  web:
    ports: !override ["127.0.0.1:PORT2:8080"]
`

func protectedFixture(t *testing.T, required int) *fixture {
	return newFixtureWith(t, strings.Replace(protectedGantry, "REQUIRED", fmt.Sprint(required), 1), pushedImage(t),
		map[string]string{"compose.production.yaml": productionPort})
}

// pushedImage pushes the healthy test image to a registry of its own on
// loopback (gantry's, without users) and returns its reference there: only
// images with a registry digest can be promoted.
func pushedImage(t *testing.T) string {
	t.Helper()
	c := testenv.Docker(t)
	reg, err := registry.New(context.Background(), registry.Options{Root: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: reg, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); reg.Close() })
	ref := ln.Addr().String() + "/srv/web:1.0.0"
	if err := c.ImageTag(context.Background(), testenv.Image(t, testenv.Healthy), ref); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.RemoveImage(c, ref) })
	rc, err := c.ImagePush(context.Background(), ref, image.PushOptions{RegistryAuth: "e30="})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := docker.DrainStream(rc); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref
}

// TestPromotionThroughTheAPI: tokens are the people. The requester cannot
// approve, a viewer cannot, a token limited to staging cannot; two
// approvers deciding at the same moment record two approvals and start the
// deployment exactly once; a rejection cancels.
func TestPromotionThroughTheAPI(t *testing.T) {
	f := protectedFixture(t, 2)
	if v := f.deploy("staging", `{"release":"1.0.0"}`); v.State != store.Succeeded {
		t.Fatalf("staging: %s %s", v.State, v.Reason)
	}
	// A direct deploy to the protected environment is refused.
	if r := f.post("admin", "/api/v1/envs/production/deploy", `{"release":"1.0.0"}`); r.status != 422 || !strings.Contains(string(r.body), "protected") {
		t.Errorf("a direct deploy to production: %d %s", r.status, r.body)
	}
	r := f.post("editor", "/api/v1/envs/production/promote", `{"from":"staging"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("promote: %d %s", r.status, r.body)
	}
	var d store.Deployment
	r.json(t, &d)
	if d.State != store.AwaitingApproval || d.Release != "1.0.0" || d.Actor != "editor" {
		t.Fatalf("promotion: %+v", d)
	}
	var pending []promote.Entry
	f.get("viewer", "/api/v1/deployments?pending=true").json(t, &pending)
	if len(pending) != 1 || pending[0].ID != d.ID || pending[0].Promotion == nil || pending[0].Promotion.Remaining != 2 {
		t.Fatalf("pending: %+v", pending)
	}
	approve := func(who string) response {
		return f.post(who, fmt.Sprintf("/api/v1/deployments/%d/approve", d.ID), `{"comment":"looks good"}`)
	}
	for who, want := range map[string]int{"editor": 403, "viewer": 403, "none": 401} {
		if r := approve(who); r.status != want {
			t.Errorf("approval by %s: %d, want %d: %s", who, r.status, want, r.body)
		}
	}
	// A second editor, and an admin, approve at the same moment.
	f.tokens["editor2"] = f.token("editor2", "editor")
	var wg sync.WaitGroup
	res := make([]response, 2)
	for i, who := range []string{"editor2", "admin"} {
		wg.Add(1)
		go func() { defer wg.Done(); res[i] = approve(who) }()
	}
	wg.Wait()
	started := 0
	for _, r := range res {
		switch r.status {
		case http.StatusAccepted:
			started++
		case http.StatusOK:
		default:
			t.Fatalf("approval: %d %s", r.status, r.body)
		}
	}
	if started != 1 {
		t.Fatalf("%d approvals started the deployment, want exactly 1: %s / %s", started, res[0].body, res[1].body)
	}
	if v := f.waitDeployment(d.ID); v.State != store.Succeeded {
		t.Fatalf("the approved deployment: %s %s", v.State, v.Reason)
	}
	var st deploy.Status
	f.get("viewer", "/api/v1/envs/production/status").json(t, &st)
	if st.Release != "1.0.0" {
		t.Fatalf("production serves %q", st.Release)
	}
	var all []promote.Entry
	f.get("viewer", "/api/v1/deployments?env=production").json(t, &all)
	if len(all) != 1 || all[0].Promotion == nil || all[0].Promotion.Approved != 2 {
		t.Fatalf("production's deployments: %+v", all)
	}

	// A rejection, by an approver, with a reason.
	r = f.post("editor", "/api/v1/envs/production/promote", `{"from":"staging","release":"1.0.0"}`)
	r.json(t, &d)
	if r := f.post("admin", fmt.Sprintf("/api/v1/deployments/%d/reject", d.ID), `{}`); r.status != 422 {
		t.Errorf("a rejection without a comment: %d %s", r.status, r.body)
	}
	if r := f.post("admin", fmt.Sprintf("/api/v1/deployments/%d/reject", d.ID), `{"comment":"not now"}`); r.status != 200 {
		t.Fatalf("reject: %d %s", r.status, r.body)
	}
	if v := f.waitDeployment(d.ID); v.State != store.Cancelled {
		t.Fatalf("rejected: %s", v.State)
	}

	if n := testutil.ToFloat64(f.srv.m.decisions.WithLabelValues("production", "approve", "denied")); n != 1 {
		t.Errorf("gantry_approval_decisions_total{decision=approve,outcome=denied} = %v", n)
	}
	if n := testutil.ToFloat64(f.srv.m.decisions.WithLabelValues("production", "approve", "ok")); n != 2 {
		t.Errorf("gantry_approval_decisions_total{decision=approve,outcome=ok} = %v", n)
	}
	// The decisions are in the audit log once each, under the token's name.
	evs, _ := f.srv.audit.List(context.Background(), audit.Filter{Action: "promotion", Limit: -1})
	count := map[string]int{}
	for _, e := range evs {
		count[e.Actor+" "+e.Action+" "+string(e.Outcome)]++
	}
	for k, want := range map[string]int{"editor promotion.request ok": 2, "editor promotion.approve denied": 1, "editor2 promotion.approve ok": 1,
		"admin promotion.approve ok": 1, "admin promotion.reject ok": 1} {
		if count[k] != want {
			t.Errorf("audit %q: %d events, want %d (all: %v)", k, count[k], want, count)
		}
	}
}
