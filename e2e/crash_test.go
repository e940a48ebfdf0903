package e2e

import (
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/store"
)

// A crash at any point of a deploy loses no record and leaves the
// environment serving exactly one known release: gantry is killed (SIGKILL,
// through a failpoint) at every step, then the next command recovers and
// the environment deploys again.
func TestCrashAtEveryStepIsRecovered(t *testing.T) {
	cases := []struct {
		point string
		image string // the release being deployed when the crash comes
		// want is the release serving after recovery.
		want string
	}{
		{"state:deploying", "IMG_healthy-v2", "1.0.0"},
		{"step:stop-old", "IMG_healthy-v2", "1.0.0"},
		{"step:create", "IMG_healthy-v2", "1.0.0"},
		{"step:start", "IMG_healthy-v2", "1.0.0"},
		{"step:verdict", "IMG_healthy-v2", "1.0.0"},
		{"state:verifying", "IMG_healthy-v2", "1.0.0"},
		{"state:succeeded", "IMG_healthy-v2", "2.0.0"},
		{"step:rollback", "IMG_unhealthy", "1.0.0"},
		{"state:rolled_back", "IMG_unhealthy", "1.0.0"},
		{"recover:converged", "IMG_healthy-v2", "1.0.0"},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.point, ":", "-"), func(t *testing.T) {
			p := newProject(t, "crash", gantryStaging, webFixed)
			p.deploy(0, "staging", "--release", "1.0.0")
			point := tc.point
			if point == "recover:converged" {
				// Crash the deploy, then crash its recovery too.
				point = "step:start,recover:converged"
			}
			p.env = []string{"GANTRY_FAILPOINTS=" + point}
			r := p.run("deploy", "staging", "--release", "2.0.0", "--image", "web="+tc.image)
			if r.code != -1 || !strings.Contains(r.stderr, "failpoint") {
				t.Fatalf("gantry should have been killed at %s: %s", tc.point, r)
			}
			if tc.point == "recover:converged" {
				r := p.run("status", "staging")
				if r.code != -1 {
					t.Fatalf("the recovery should have been killed: %s", r)
				}
			}
			p.env = nil

			st := p.status("staging")
			if st.Release != tc.want {
				t.Fatalf("after recovery the record says %q serves, want %q: %+v", st.Release, tc.want, st)
			}
			run := p.running()
			if len(run) != 1 || run[0] != "web@"+tc.want {
				t.Fatalf("running after recovery: %v, want only web@%s", run, tc.want)
			}
			wantVersion := tc.want
			if v := p.version(); v != wantVersion {
				t.Fatalf("serving %q, want %q", v, wantVersion)
			}
			for _, h := range p.history("staging") {
				if !h.State.Terminal() {
					t.Fatalf("deployment %d left %s", h.ID, h.State)
				}
				if h.Release == "2.0.0" && tc.want == "1.0.0" && h.State != store.RolledBack {
					t.Fatalf("the interrupted deployment is %s, want rolled_back: %s", h.State, h.Reason)
				}
			}
			p.deploy(0, "staging", "--release", "3.0.0", "--image", "web=IMG_healthy")
		})
	}
}
