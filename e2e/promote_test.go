package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/promote"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// The promoted project: the released example app, in staging and in a
// protected production that needs one approval from an admin and runs the
// images from another repository (web-prod) on its own port.
const promoteGantryYAML = `project: PROJECT
compose: compose.yaml
registry:
  url: REGADDR
  username: ci
  password_env: E2E_REGISTRY_PASSWORD
release:
  platforms: [linux/amd64, linux/arm64]
services:
  web:
    build:
      binaries:
        linux/amd64: bin/app-linux-amd64
        linux/arm64: bin/app-linux-arm64
      path: /app
      user: "65532:65532"
environments:
  staging:
    env_files: [staging.env]
    health: { window: 1m, min_healthy: 1s }
  production:
    env_files: [production.env]
    protected: true
    requires: [staging]
    approvals: { required: 1, from: [role:admin], expire: EXPIRE }
    health: { window: 1m, min_healthy: 1s }
`

const promoteComposeYAML = `services:
  web:
    image: REGADDR/PROJECT/${WEB_REPO:-web}
    ports: ["127.0.0.1:${WEB_LISTEN}:8080"]
    environment:
      APP_MODE: ${APP_MODE:-healthy}
    healthcheck:
      test: ["CMD", "/app", "check"]
      interval: 1s
      timeout: 3s
      retries: 2
`

type promoteProject struct {
	*releaseProject
	prodPort int
}

// newPromoteProject makes the project with release 0.1.0 made and deployed
// to staging; approvals expire after expire.
func newPromoteProject(t *testing.T, expire string) *promoteProject {
	t.Helper()
	addr := startRegistry(t)
	rp := newReleaseProject(t, addr, "")
	p := &promoteProject{releaseProject: rp, prodPort: testenv.FreePort(t)}
	p.configure(expire)
	p.write("staging.env", fmt.Sprintf("WEB_REPO=web\nWEB_LISTEN=%d\n", p.port))
	p.write("production.env", fmt.Sprintf("WEB_REPO=web-prod\nWEB_LISTEN=%d\n", p.prodPort))
	p.binaries("0.1.0")
	p.commit("feat: the first feature")
	p.release(0)
	p.deploy(0, "staging", "--release", "0.1.0")
	return p
}

// configure writes gantry.yaml with approvals expiring after expire.
func (p *promoteProject) configure(expire string) {
	r := strings.NewReplacer("REGADDR", p.registry, "EXPIRE", expire)
	p.write("gantry.yaml", r.Replace(promoteGantryYAML))
	p.write("compose.yaml", r.Replace(promoteComposeYAML))
}

// as runs gantry as actor (GANTRY_ACTOR).
func (p *promoteProject) as(actor string, args ...string) result {
	p.t.Helper()
	saved := p.env
	p.env = append(append([]string{}, p.env...), "GANTRY_ACTOR="+actor)
	defer func() { p.env = saved }()
	return p.run(args...)
}

// promote runs gantry promote as actor and decodes the deployment.
func (p *promoteProject) promote(actor string, wantCode int, args ...string) (promote.Entry, result) {
	p.t.Helper()
	r := p.as(actor, append([]string{"promote", "--output", "json"}, args...)...)
	if r.code != wantCode {
		p.t.Fatalf("gantry promote %v as %s: want exit %d, got %s", args, actor, wantCode, r)
	}
	var e promote.Entry
	if wantCode == 0 {
		if err := json.Unmarshal([]byte(r.stdout), &e); err != nil {
			p.t.Fatalf("gantry promote output: %v\n%s", err, r)
		}
	}
	return e, r
}

func (p *promoteProject) deployments(args ...string) []promote.Entry {
	p.t.Helper()
	r := p.run(append([]string{"deployments", "--output", "json"}, args...)...)
	if r.code != 0 {
		p.t.Fatalf("gantry deployments %v: %s", args, r)
	}
	var es []promote.Entry
	if err := json.Unmarshal([]byte(r.stdout), &es); err != nil {
		p.t.Fatalf("gantry deployments output: %v\n%s", err, r)
	}
	return es
}

func (p *promoteProject) deployment(id int64) promote.Entry {
	p.t.Helper()
	for _, e := range p.deployments("--limit", "0") {
		if e.ID == id {
			return e
		}
	}
	p.t.Fatalf("deployment %d is not listed", id)
	return promote.Entry{}
}

// registryGet GETs a path of the registry API with the test user.
func (p *promoteProject) registryGet(path string) (int, string) {
	p.t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+p.registry+path, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	req.SetBasicAuth("ci", registryPassword)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func digestOf(ref string) string {
	_, d, _ := strings.Cut(ref, "@")
	return d
}

// TestPromoteWithApproval is the path from staging to a protected
// production: the promotion waits, the requester cannot approve it, the
// next command's recovery leaves it alone, another person's approval runs
// it through the health gate, and production runs the very digest that
// staging ran, copied to its own repository without any tag.
func TestPromoteWithApproval(t *testing.T) {
	p := newPromoteProject(t, "24h")
	staging := p.status("staging")
	stagingRef := staging.Services[0].Image
	digest := digestOf(stagingRef)
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("staging runs %s, not a digest", stagingRef)
	}

	// Production is reached only through promote.
	if r := p.run("deploy", "production", "--release", "0.1.0"); r.code != 2 || !strings.Contains(r.stderr, "gantry promote staging production") {
		t.Fatalf("direct deploy to protected production: want exit 2 naming gantry promote, got %s", r)
	}

	e, r := p.promote("alice", 0, "staging", "production")
	if e.State != store.AwaitingApproval || e.Release != "0.1.0" || e.Promotion == nil || e.Promotion.Remaining != 1 ||
		e.Promotion.RequestedBy != "alice" || e.Promotion.From != "staging" {
		t.Fatalf("promotion: %+v\n%s", e, r)
	}
	if got := p.running(); len(got) != 1 {
		t.Fatalf("a promotion waiting for approval runs containers: %v", got)
	}
	pending := p.deployments("--pending")
	if len(pending) != 1 || pending[0].ID != e.ID || !strings.Contains(pending[0].Promotion.WaitingFor, "1 more approval from role:admin") {
		t.Fatalf("pending: %+v", pending)
	}
	if r := p.run("deployments", "--pending"); !strings.Contains(r.stdout, "WAITING FOR") || !strings.Contains(r.stdout, "alice") {
		t.Errorf("deployments --pending text: %s", r)
	}

	// The requester cannot approve: refused, nothing changes.
	r = p.as("alice", "approve", fmt.Sprint(e.ID))
	if r.code != 2 || !strings.Contains(r.stderr, "alice requested deployment") || !strings.Contains(r.stderr, "cannot approve it; it needs an approval from role:admin") {
		t.Fatalf("self-approval: want exit 2 saying alice cannot approve, got %s", r)
	}
	// An unknown ID and a reject without a reason are refused too.
	if r := p.as("bob", "approve", "999"); r.code != 2 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("approve of an unknown ID: %s", r)
	}
	if r := p.as("bob", "reject", fmt.Sprint(e.ID)); r.code != 2 || !strings.Contains(r.stderr, "--comment") {
		t.Errorf("reject without a comment: %s", r)
	}
	// The next command's recovery does not take a held deployment for
	// unfinished work.
	if st := p.status("production"); st.Release != "" || len(st.Recovered) != 0 {
		t.Fatalf("status of production: %+v", st)
	}
	if got := p.deployment(e.ID); got.State != store.AwaitingApproval || len(got.Promotion.Decisions) != 0 {
		t.Fatalf("after refusals and recovery: %s, decisions %+v", got.State, got.Promotion.Decisions)
	}

	// Another person approves: the deployment runs, gated.
	r = p.as("bob", "approve", fmt.Sprint(e.ID), "--comment", "staging looks good", "--output", "json")
	if r.code != 0 {
		t.Fatalf("approval by bob: %s", r)
	}
	var dec promote.Decision
	if err := json.Unmarshal([]byte(r.stdout), &dec); err != nil {
		t.Fatalf("approve output: %v\n%s", err, r)
	}
	if !dec.Started || dec.Result == nil || dec.Result.State != store.Succeeded || !dec.Result.Services[0].Healthy ||
		dec.Result.Services[0].GateSeconds < 1 {
		t.Fatalf("approval did not run the gated deployment: %+v\n%s", dec, r)
	}
	prodRef := dec.Result.Services[0].Image
	want := p.registry + "/" + p.name + "/web-prod@" + digest
	if prodRef != want {
		t.Fatalf("production runs %s, want %s (staging's digest in production's repository)", prodRef, want)
	}
	v, err := get(fmt.Sprintf("http://127.0.0.1:%d/version", p.prodPort))
	if err != nil || v != "0.1.0" {
		t.Fatalf("production /version: %q %v", v, err)
	}
	if st := p.status("production"); st.Release != "0.1.0" || st.Deployment != e.ID || digestOf(st.Services[0].Image) != digest {
		t.Fatalf("status of production: %+v", st)
	}
	// The copy moved the index by digest and set no tag at all.
	if code, _ := p.registryGet("/v2/" + p.name + "/web-prod/manifests/" + digest); code != http.StatusOK {
		t.Errorf("web-prod@%s: status %d", digest, code)
	}
	if code, body := p.registryGet("/v2/" + p.name + "/web-prod/tags/list"); code == http.StatusOK && strings.Contains(body, `"tags":[`) {
		t.Errorf("production's repository got tags: %s", body)
	}
	got := p.deployment(e.ID)
	if got.State != store.Succeeded || got.Promotion.Approved != 1 || got.Promotion.Decisions[0].Actor != "bob" ||
		got.Promotion.Decisions[0].Comment != "staging looks good" {
		t.Fatalf("record: %+v %+v", got.Deployment, got.Promotion)
	}
	if r := p.as("carol", "approve", fmt.Sprint(e.ID)); r.code != 2 || !strings.Contains(r.stderr, "nothing to decide") {
		t.Errorf("approval of a finished deployment: %s", r)
	}
	if r := p.run("deployments"); !strings.Contains(r.stdout, "bob") || !strings.Contains(r.stdout, "staging") {
		t.Errorf("deployments text: %s", r)
	}
}

// TestPromoteRefusalsExpiryAndRace: a release that failed in staging is
// not promoted; an expired request cannot be approved and is cancelled;
// two approvers approving at the same moment are both recorded and start
// exactly one deployment.
func TestPromoteRefusalsExpiryAndRace(t *testing.T) {
	p := newPromoteProject(t, "2s")

	// Release 0.2.0 fails its health gate in staging and is rolled back.
	p.binaries("0.2.0")
	p.commit("fix: the second fix")
	p.release(0)
	p.env = append(p.env, "APP_MODE=unhealthy")
	p.deploy(3, "staging", "--release", "0.2.0")
	p.env = p.env[:len(p.env)-1]
	_, r := p.promote("alice", 2, "staging", "production", "--release", "0.2.0")
	if !strings.Contains(r.stderr, "release 0.2.0 did not succeed in staging") || !strings.Contains(r.stderr, "rolled_back") {
		t.Fatalf("promotion of a rolled back release: %s", r)
	}
	if _, r := p.promote("alice", 2, "staging", "production", "--release", "9.9.9"); !strings.Contains(r.stderr, "never deployed to staging") {
		t.Errorf("promotion of an unknown release: %s", r)
	}
	if es := p.deployments("production"); len(es) != 0 {
		t.Fatalf("refused promotions left deployments: %+v", es)
	}

	// A request past its expiry cannot be approved; it is cancelled.
	e, _ := p.promote("alice", 0, "staging", "production") // the serving release, 0.1.0
	if e.Release != "0.1.0" {
		t.Fatalf("default release: %s, want the one serving in staging", e.Release)
	}
	time.Sleep(time.Until(e.Promotion.ExpiresAt) + 100*time.Millisecond)
	r = p.as("bob", "approve", fmt.Sprint(e.ID))
	if r.code != 2 || !strings.Contains(r.stderr, "expired") || !strings.Contains(r.stderr, "gantry promote staging production --release 0.1.0") {
		t.Fatalf("approval of an expired request: %s", r)
	}
	got := p.deployment(e.ID)
	if got.State != store.Cancelled || !strings.Contains(got.Reason, "approval request expired") || len(got.Promotion.Decisions) != 0 {
		t.Fatalf("expired request: %s %q %+v", got.State, got.Reason, got.Promotion.Decisions)
	}
	if es := p.deployments("--pending"); len(es) != 0 {
		t.Fatalf("an expired request is pending: %+v", es)
	}

	// Two approvers at the same moment, as two processes.
	p.configure("1h")
	p.commit("chore: approvals wait an hour")
	e, _ = p.promote("alice", 0, "staging", "production")
	type run struct {
		cmd      *exec.Cmd
		out, err fmt.Stringer
	}
	var runs []run
	for _, who := range []string{"bob", "carol"} {
		saved := p.env
		p.env = append(append([]string{}, p.env...), "GANTRY_ACTOR="+who)
		cmd, out, errb := p.start("approve", fmt.Sprint(e.ID), "--output", "json")
		p.env = saved
		runs = append(runs, run{cmd, out, errb})
	}
	started := 0
	for _, rn := range runs {
		done := make(chan error, 1)
		go func() { done <- rn.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("racing approval: %v\nstdout:\n%s\nstderr:\n%s", err, rn.out, rn.err)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("racing approval did not finish")
		}
		var dec promote.Decision
		if err := json.Unmarshal([]byte(rn.out.String()), &dec); err != nil {
			t.Fatalf("approve output: %v\n%s", err, rn.out)
		}
		if !dec.Recorded {
			t.Errorf("an approval was not recorded: %s", rn.out)
		}
		if dec.Started {
			started++
		}
	}
	if started != 1 {
		t.Fatalf("%d approvals started the deployment, want exactly 1", started)
	}
	got = p.deployment(e.ID)
	if got.State != store.Succeeded || got.Promotion.Approved != 2 {
		t.Fatalf("after racing approvals: %s with %d approvals, want succeeded with 2", got.State, got.Promotion.Approved)
	}
	// Exactly one deployment ran: one transition to deploying, one
	// production container.
	var hist []struct {
		ID    int64       `json:"id"`
		State store.State `json:"state"`
	}
	r = p.run("history", "production", "--output", "json")
	if err := json.Unmarshal([]byte(r.stdout), &hist); err != nil {
		t.Fatalf("history: %v\n%s", err, r)
	}
	ran := 0
	for _, h := range hist {
		if h.State == store.Succeeded {
			ran++
		}
	}
	if ran != 1 {
		t.Fatalf("production history %+v: want exactly one deployment that ran", hist)
	}
	prod := 0
	for _, c := range p.containers() {
		if c.Labels["io.gantry.env"] == "production" {
			prod++
		}
	}
	if prod != 1 {
		t.Fatalf("%d production containers, want 1", prod)
	}
}

// TestPromoteCrash: gantry killed (SIGKILL) right after an approval took
// the start leaves the deployment approved and waiting, which the next
// command does not roll back and approving again starts; killed while the
// approved deployment runs, the next command recovers it like any other.
func TestPromoteCrash(t *testing.T) {
	p := newPromoteProject(t, "24h")
	e, _ := p.promote("alice", 0, "staging", "production")

	p.env = append(p.env, "GANTRY_FAILPOINTS=promote:start")
	r := p.as("bob", "approve", fmt.Sprint(e.ID))
	p.env = p.env[:len(p.env)-1]
	if r.code != -1 || !strings.Contains(r.stderr, "failpoint") {
		t.Fatalf("gantry should have been killed after the approval: %s", r)
	}
	if st := p.status("production"); st.Release != "" || len(st.Recovered) != 0 {
		t.Fatalf("status after the crash: %+v", st)
	}
	got := p.deployment(e.ID)
	if got.State != store.AwaitingApproval || got.Promotion.ApprovedAt == nil || got.Promotion.Approved != 1 {
		t.Fatalf("after the crash: %s %+v", got.State, got.Promotion)
	}
	if r := p.run("deployments", "--pending"); !strings.Contains(r.stdout, "approved, starting") {
		t.Errorf("deployments --pending: %s", r)
	}
	r = p.as("bob", "approve", fmt.Sprint(e.ID), "--output", "json")
	var dec promote.Decision
	if err := json.Unmarshal([]byte(r.stdout), &dec); r.code != 0 || err != nil || !dec.Started || dec.Recorded ||
		dec.Result == nil || dec.Result.State != store.Succeeded {
		t.Fatalf("approving again after the crash: %+v %v\n%s", dec, err, r)
	}

	// Killed while the approved deployment runs: recovered by the next
	// command, and production keeps serving what it served before.
	p.binaries("0.2.0")
	p.commit("feat: the second feature")
	p.release(0)
	p.deploy(0, "staging", "--release", "0.2.0")
	e, _ = p.promote("alice", 0, "staging", "production")
	p.env = append(p.env, "GANTRY_FAILPOINTS=step:start")
	r = p.as("bob", "approve", fmt.Sprint(e.ID))
	p.env = p.env[:len(p.env)-1]
	if r.code != -1 {
		t.Fatalf("gantry should have been killed while deploying: %s", r)
	}
	st := p.status("production")
	if st.Release != "0.1.0" || len(st.Recovered) != 1 || st.Recovered[0] != e.ID {
		t.Fatalf("after recovery: %+v", st)
	}
	if v, err := get(fmt.Sprintf("http://127.0.0.1:%d/version", p.prodPort)); err != nil || v != "0.1.0" {
		t.Fatalf("production /version after recovery: %q %v", v, err)
	}
	if got := p.deployment(e.ID); got.State != store.RolledBack || !strings.Contains(got.Reason, "interrupted") {
		t.Fatalf("interrupted deployment: %s %q", got.State, got.Reason)
	}
}
