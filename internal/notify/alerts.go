package notify

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
)

// Severities of gantry's alerts.
var severityOf = map[string]string{
	DeploymentFailed: config.SeverityCritical,
	AnalysisFailed:   config.SeverityCritical,
	ServiceUnhealthy: config.SeverityCritical,
	RolledBack:       config.SeverityWarning,
	ApprovalWaiting:  config.SeverityInfo,
}

// deployAlerts clear when a deployment of their environment succeeds.
var deployAlerts = []string{DeploymentFailed, RolledBack, AnalysisFailed}

func (m *Manager) alert(name, env, service, release string, deployment int64, summary, description string) store.Alert {
	return store.Alert{Name: name, Severity: severityOf[name], Project: m.project, Env: env, Service: service, Release: release,
		DeploymentID: deployment, Summary: summary, Description: description, Fingerprint: Fingerprint(name, m.project, env, service)}
}

// DeploymentFinished fires or resolves the alerts a deployment's outcome
// calls for: a release that succeeded resolves its environment's failure
// alerts; one rolled back fires GantryRolledBack, one that failed with
// nothing to roll back to GantryDeploymentFailed, and a failed analysis
// GantryAnalysisFailed besides, with the query, values and threshold.
func (m *Manager) DeploymentFinished(ctx context.Context, res *deploy.Result) error {
	var errs []error
	fire := func(a store.Alert) {
		if _, err := m.Fire(ctx, a); err != nil {
			errs = append(errs, err)
		}
	}
	analysisFailed := res.Failure != nil && res.Failure.Check == "analysis"
	switch {
	case res.State == store.Succeeded && !analysisFailed:
		for _, name := range deployAlerts {
			if err := m.Resolve(ctx, Fingerprint(name, m.project, res.Env, "")); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case res.State == store.RolledBack:
		fire(m.alert(RolledBack, res.Env, "", res.Release, res.Deployment,
			fmt.Sprintf("release %s was rolled back in %s; %s serves again", res.Release, res.Env, res.Previous), res.Reason))
	default:
		fire(m.alert(DeploymentFailed, res.Env, "", res.Release, res.Deployment,
			fmt.Sprintf("release %s failed in %s", res.Release, res.Env), res.Reason))
	}
	if analysisFailed && res.Analysis != nil {
		desc := res.Analysis.Reason
		a := m.alert(AnalysisFailed, res.Env, "", res.Release, res.Deployment,
			fmt.Sprintf("the analysis of release %s in %s %s", res.Release, res.Env, res.Analysis.Phase), "")
		if c := res.Analysis.Decisive(); c != nil && len(c.Measurements) > 0 {
			last := c.Measurements[len(c.Measurements)-1]
			var conds []string
			if c.SuccessIf != "" {
				conds = append(conds, "success_if "+c.SuccessIf)
			}
			if c.FailIf != "" {
				conds = append(conds, "fail_if "+c.FailIf)
			}
			desc = fmt.Sprintf("check %s: %s\nquery: %s\nthreshold: %s\nlast measurement: %s", c.Name, c.Reason, c.Query, strings.Join(conds, "; "), last)
			// The service labels the alert; the condition stays the
			// environment's (a later success resolves it).
			a.Service = c.Service
		}
		a.Description = desc
		fire(a)
	}
	return errors.Join(errs...)
}

// ServiceHealth fires GantryServiceUnhealthy for a service of the serving
// release that is not healthy, and resolves it once it is again.
func (m *Manager) ServiceHealth(ctx context.Context, env, service, release string, healthy bool, detail string) error {
	if healthy {
		return m.Resolve(ctx, Fingerprint(ServiceUnhealthy, m.project, env, service))
	}
	_, err := m.Fire(ctx, m.alert(ServiceUnhealthy, env, service, release, 0,
		fmt.Sprintf("service %s of release %s in %s is unhealthy after a successful deploy", service, release, env), detail))
	return err
}

// syncApprovals fires GantryApprovalWaiting for each promotion waiting for
// approval and resolves the ones decided, expired or withdrawn.
func (m *Manager) syncApprovals(ctx context.Context) error {
	waiting, err := m.st.ApprovalRequests(ctx, m.project, "", true)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	var errs []error
	for _, r := range waiting {
		a := m.alert(ApprovalWaiting, r.Env, "", "", r.DeploymentID,
			fmt.Sprintf("deployment %d to %s waits for %d approval(s) (requested by %s, from %s); expires %s", r.DeploymentID, r.Env, r.Required-r.Approvals(), r.RequestedBy, r.From, r.ExpiresAt.UTC().Format("2006-01-02 15:04 MST")),
			"approve with: gantry approve "+strconv.FormatInt(r.DeploymentID, 10))
		a.Fingerprint += "#" + strconv.FormatInt(r.DeploymentID, 10)
		want[a.Fingerprint] = true
		if d, err := m.st.Get(ctx, r.DeploymentID); err == nil {
			a.Release = d.Release
		}
		if _, err := m.Fire(ctx, a); err != nil {
			errs = append(errs, err)
		}
	}
	firing, err := m.st.Alerts(ctx, false, 0)
	if err != nil {
		return err
	}
	for _, a := range firing {
		if a.Name == ApprovalWaiting && a.Project == m.project && !want[a.Fingerprint] && strings.Contains(a.Fingerprint, "#") {
			if err := m.Resolve(ctx, a.Fingerprint); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
