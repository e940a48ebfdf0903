package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/store"
)

// Errors of the gate check; match them with errors.Is.
var (
	// ErrGateRefused: the environment requires gates, and the release's
	// failed or never ran. Nothing was changed.
	ErrGateRefused = errors.New("refused by the release gates")
	// ErrOverrideForbidden: someone other than an admin asked to override
	// a gate.
	ErrOverrideForbidden = errors.New("only an admin may override a release gate")
)

// AuditGateOverride is the audit action of an override.
const AuditGateOverride = "gate.override"

// GateOverride asks to deploy a release its gates refuse. Only an admin
// may, and only with a reason, which goes to the audit log.
type GateOverride struct {
	Reason string
}

// Admission is a request to put a release into an environment, as the gate
// check sees it.
type Admission struct {
	Project string
	Env     *config.Environment
	// Gates are the gates gantry.yaml configures; each must have run on
	// the release and passed.
	Gates config.Gates
	// Release is the version asked for; empty when none was named.
	Release string
	// Images replace the release's images for some services: those were
	// never gated.
	Images map[string]string
	// Override, when not nil, asks to deploy even though the gates refuse.
	Override *GateOverride
	// Who asks, for the audit event of an override: Actor, Role,
	// RequestID and Client are used.
	Who audit.Event
}

// Admit decides whether a release may go to an environment. Where the
// environment has requires:, only a release that succeeded in each of
// those (checkRequires). Then: always where the environment does not
// require gates; else only when every gate of gantry.yaml ran on the
// release and passed, or when an admin overrides the gates with a reason. An override is written to the audit log before Admit
// returns, and a refused one (not an admin) too; when the audit event
// cannot be written, the override is refused.
func Admit(ctx context.Context, st *store.Store, log *audit.Log, a Admission) error {
	if a.Override != nil && strings.TrimSpace(a.Override.Reason) == "" {
		return inputError("--override-gate needs --reason: say why this release may skip its gates; the reason goes to the audit log")
	}
	if err := checkRequires(ctx, st, a); err != nil {
		return err
	}
	if a.Env == nil || !a.Env.RequireGates {
		return nil
	}
	problem, err := gateProblem(ctx, st, a)
	if err != nil || problem == "" {
		return err
	}
	if a.Override == nil {
		return fmt.Errorf("%w: %s requires releases that passed their gates; %s. Fix that, or an admin can deploy it anyway with --override-gate --reason TEXT (audited)",
			ErrGateRefused, a.Env.Name, problem)
	}
	ev := a.Who
	ev.Action, ev.Object = AuditGateOverride, "env/"+a.Env.Name
	ev.Detail = map[string]string{"env": a.Env.Name, "release": a.Release, "reason": a.Override.Reason, "refused": problem}
	if ev.Role != string(auth.Admin) {
		ev.Outcome = audit.Denied
		if log != nil {
			log.Append(ctx, ev)
		}
		who := ev.Actor
		if ev.Role != "" {
			who += " (" + ev.Role + ")"
		}
		return fmt.Errorf("%w: %s may not; %s refuses the release because %s", ErrOverrideForbidden, who, a.Env.Name, problem)
	}
	if log == nil {
		return errors.New("a gate override must be audited, and there is no audit log")
	}
	ev.Outcome = audit.OK
	if _, err := log.Append(ctx, ev); err != nil {
		return fmt.Errorf("the gate override was not written to the audit log, so it is refused: %w", err)
	}
	return nil
}

// gateProblem says why the release does not pass the environment's gates;
// "" when it does.
func gateProblem(ctx context.Context, st *store.Store, a Admission) (string, error) {
	if a.Release == "" {
		return "no release was named; deploy a release made by gantry release (--release VERSION)", nil
	}
	if len(a.Images) > 0 {
		svcs := make([]string, 0, len(a.Images))
		for s := range a.Images {
			svcs = append(svcs, s)
		}
		sort.Strings(svcs)
		return fmt.Sprintf("--image replaces the image of %s, which no gate checked", strings.Join(svcs, ", ")), nil
	}
	r, err := st.GetRelease(ctx, a.Project, a.Release)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Sprintf("release %s was not made by gantry release, so no gate ran on it", a.Release), nil
	}
	if err != nil {
		return "", err
	}
	var problems []string
	check := func(gate string, configured bool, never string) {
		g := r.Gates[gate]
		switch {
		case g == nil && configured:
			problems = append(problems, fmt.Sprintf("its %s gate never ran (%s)", gate, never))
		case g != nil && !g.Passed:
			problems = append(problems, fmt.Sprintf("its %s gate failed: %s", gate, strings.TrimPrefix(g.Summary, "failed: ")))
		}
	}
	check(store.GateScan, a.Gates.Scan != nil, "run gantry scan --release "+a.Release)
	check(store.GateLint, a.Gates.Lint != nil, "it was released before gates.lint was set; release a new version")
	if len(problems) == 0 && len(r.Gates) == 0 {
		problems = append(problems, "no gate ran on it")
	}
	if len(problems) == 0 {
		return "", nil
	}
	return "release " + a.Release + ": " + strings.Join(problems, "; "), nil
}
