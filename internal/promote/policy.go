package promote

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
)

// Actor is who asks: a person's or a token's name and its role (locally,
// the CLI acts as an admin: gantry server is where roles are enforced).
// RequestID and Client, when the request came over HTTP, go to the audit
// log with every decision.
type Actor struct {
	Name      string    `json:"name"`
	Role      auth.Role `json:"role"`
	RequestID string    `json:"-"`
	Client    string    `json:"-"`
}

func (a Actor) String() string { return a.Name + " (" + string(a.Role) + ")" }

// Errors of the promotion rules; match them with errors.Is. All of them are
// also deploy.ErrInput: nothing was changed.
var (
	// ErrForbidden: the actor's role or name is not one the environment's
	// policy accepts for this.
	ErrForbidden = errors.New("not allowed")
	// ErrSelfApproval: the requester may never approve their own request.
	ErrSelfApproval = errors.New("self-approval refused")
	// ErrNotPromotable: the release did not succeed in the source
	// environment, is not released, or would not run by digest.
	ErrNotPromotable = errors.New("not promotable")
)

// refusal marks err as bad input (exit code 2, HTTP 4xx), keeping its
// sentinels for errors.Is.
func refusal(err error, format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", deploy.ErrInput, err, fmt.Sprintf(format, args...))
}

func (a Actor) validate() error {
	if a.Name == "" || strings.ContainsFunc(a.Name, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("%w: actor %q: a name without spaces is needed (set GANTRY_ACTOR)", deploy.ErrInput, a.Name)
	}
	if _, err := auth.ParseRole(string(a.Role)); err != nil || a.Role != auth.Role(strings.ToLower(string(a.Role))) {
		return fmt.Errorf("%w: actor %s: role %q is not admin, editor or viewer", deploy.ErrInput, a.Name, a.Role)
	}
	return nil
}

// mayRequest: editors and admins request promotions; viewers only read.
func mayRequest(a Actor) bool { return a.Role.AtLeast(auth.Editor) }

// mayApprove says whether a matches an approvers list (role:admin, alice);
// an empty list accepts any admin or editor. Viewers never approve.
func mayApprove(a Actor, approvers []string) bool {
	if !mayRequest(a) {
		return false
	}
	if len(approvers) == 0 {
		return true
	}
	for _, w := range approvers {
		if role, ok := strings.CutPrefix(w, config.ApproverRolePrefix); ok {
			if auth.Role(role) == a.Role {
				return true
			}
		} else if w == a.Name {
			return true
		}
	}
	return false
}

// whoMay says in words who may approve.
func whoMay(approvers []string) string {
	if len(approvers) == 0 {
		return "any admin or editor"
	}
	return strings.Join(approvers, " or ")
}

// checkApprove is the policy for an approval of request r.
func checkApprove(r *store.ApprovalRequest, a Actor) error {
	if a.Name == r.RequestedBy {
		return refusal(ErrSelfApproval, "%s requested deployment %d and cannot approve it; it needs an approval from %s (gantry deployments --pending shows who it waits for)",
			a.Name, r.DeploymentID, approversBut(r))
	}
	if !mayApprove(a, r.Approvers) {
		return refusal(ErrForbidden, "%s may not approve promotions to %s; the environment's policy asks for %s", a, r.Env, whoMay(r.Approvers))
	}
	return nil
}

// checkReject: approvers may reject, and the requester may withdraw.
func checkReject(r *store.ApprovalRequest, a Actor) error {
	if a.Name == r.RequestedBy || mayApprove(a, r.Approvers) {
		return nil
	}
	return refusal(ErrForbidden, "%s may not reject promotions to %s; the environment's policy asks for %s, or the requester %s may withdraw it",
		a, r.Env, whoMay(r.Approvers), r.RequestedBy)
}

// approversBut names who may approve, other than the requester.
func approversBut(r *store.ApprovalRequest) string {
	var l []string
	for _, w := range r.Approvers {
		if w != r.RequestedBy {
			l = append(l, w)
		}
	}
	if len(r.Approvers) == 0 {
		return "another admin or editor"
	}
	if len(l) == 0 {
		return "someone the policy does not name yet (it names only " + r.RequestedBy + ")"
	}
	return strings.Join(l, " or ")
}

// reachable checks, when a request is made, that the policy can ever be
// met without the requester: with approvers named one by one, enough of
// them must be other people.
func reachable(env *config.Environment, requester string) error {
	a := approvalsOf(env)
	others := 0
	for _, w := range a.From {
		if strings.HasPrefix(w, config.ApproverRolePrefix) {
			return nil
		}
		if w != requester {
			others++
		}
	}
	if len(a.From) == 0 || others >= a.Required {
		return nil
	}
	return refusal(ErrForbidden, "%s needs %d approval(s) from %s; with %s requesting, only %d other person can approve; ask one of them to request the promotion, or add approvers in gantry.yaml",
		env.Name, a.Required, strings.Join(a.From, ", "), requester, others)
}

// approvalsOf is a protected environment's approval policy, with the
// defaults for one that was not loaded through config (which fills them in).
func approvalsOf(env *config.Environment) config.Approvals {
	a := config.Approvals{Required: config.DefaultApprovals, Expire: config.Duration(config.DefaultApprovalExpiry)}
	if env.Approvals != nil {
		a.From = env.Approvals.From
		if env.Approvals.Required > 0 {
			a.Required = env.Approvals.Required
		}
		if env.Approvals.Expire > 0 {
			a.Expire = env.Approvals.Expire
		}
	}
	return a
}

// remaining is how many more approvals a request needs.
func remaining(r *store.ApprovalRequest) int { return max(0, r.Required-r.Approvals()) }

// waitingFor says whom a request waits for, in words.
func waitingFor(r *store.ApprovalRequest) string {
	n := remaining(r)
	if n == 0 {
		return ""
	}
	s := "s"
	if n == 1 {
		s = ""
	}
	var done []string
	for _, d := range r.Decisions {
		if d.Decision == store.Approve {
			done = append(done, d.Actor)
		}
	}
	out := fmt.Sprintf("%d more approval%s from %s", n, s, whoMay(r.Approvers))
	excl := append([]string{r.RequestedBy + " (requester)"}, done...)
	return out + ", not " + strings.Join(excl, ", ")
}
