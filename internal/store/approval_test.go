package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// hold records a deployment of release to production awaiting required
// approvals, requested by alice, expiring 24h after t0.
func hold(t *testing.T, s *Store, release string, required int) *Deployment {
	t.Helper()
	d := &Deployment{Project: "shop", Env: "production", Release: release, Actor: "alice", PID: 42}
	r := &ApprovalRequest{From: "staging", SourceID: 1, RequestedBy: "alice", RequesterRole: "editor", Required: required,
		Approvers: []string{"role:admin", "bob"}, ExpiresAt: t0.Add(24 * time.Hour)}
	if err := s.CreateAwaiting(context.Background(), d, r); err != nil {
		t.Fatal(err)
	}
	return d
}

func allow(*ApprovalRequest, *Deployment) error { return nil }

func decide(s *Store, id int64, actor string, dec Decision, at time.Time) (*Decided, error) {
	return s.Decide(context.Background(), Approval{DeploymentID: id, Actor: actor, Role: "admin", Decision: dec, Comment: "lgtm"}, at, allow)
}

func TestCreateAwaiting(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	d := hold(t, s, "1.0.0", 2)
	if d.State != AwaitingApproval {
		t.Fatalf("state %s, want awaiting_approval", d.State)
	}
	got := get(t, s, d.ID)
	if got.State != AwaitingApproval || got.PlanID != d.ID || !strings.Contains(got.Reason, "requested by alice") {
		t.Fatalf("stored: %+v", got)
	}
	tr, err := s.Transitions(ctx, d.ID)
	if err != nil || len(tr) != 2 || tr[1].To != AwaitingApproval {
		t.Fatalf("transitions %+v, %v", tr, err)
	}
	r, err := s.ApprovalRequest(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.From != "staging" || r.Required != 2 || len(r.Approvers) != 2 || !r.ExpiresAt.Equal(t0.Add(24*time.Hour)) || r.ApprovedAt != nil || len(r.Decisions) != 0 {
		t.Fatalf("request: %+v", r)
	}
	// A held deployment is no unfinished work for the next command's
	// recovery: it must not be rolled back.
	if u, err := s.Unfinished(ctx, "shop", "production"); err != nil || len(u) != 0 {
		t.Fatalf("unfinished: %v %v", ids(u), err)
	}
	if _, err := s.ApprovalRequest(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown request: %v", err)
	}
}

// TestApprovalsStartOnce: the deployment may begin only once the required
// approvals are in; the approval that completes them, and only that one,
// is given the start; approvals arriving while it runs are still recorded.
func TestApprovalsStartOnce(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	d := hold(t, s, "1.0.0", 2)

	if err := s.Transition(ctx, d.ID, Deploying, ""); !errors.Is(err, ErrNotAwaiting) {
		t.Fatalf("unapproved deployment began: %v", err)
	}
	dd, err := decide(s, d.ID, "bob", Approve, t0)
	if err != nil || !dd.Recorded || dd.Start {
		t.Fatalf("first of two approvals: %+v %v", dd, err)
	}
	if _, err := decide(s, d.ID, "bob", Approve, t0); !errors.Is(err, ErrDecided) {
		t.Fatalf("bob approving twice: %v", err)
	}
	if _, err := decide(s, d.ID, "bob", Reject, t0); !errors.Is(err, ErrDecided) {
		t.Fatalf("bob rejecting after approving: %v", err)
	}
	dd, err = decide(s, d.ID, "carol", Approve, t0)
	if err != nil || !dd.Recorded || !dd.Start || dd.Request.ApprovedAt == nil {
		t.Fatalf("second approval: %+v %v", dd, err)
	}
	// A third approver, while the starter is at work: recorded, no start.
	dd, err = decide(s, d.ID, "dave", Approve, t0)
	if err != nil || !dd.Recorded || dd.Start {
		t.Fatalf("third approval: %+v %v", dd, err)
	}
	if err := s.BeginApproved(ctx, d.ID, 7); err != nil {
		t.Fatal(err)
	}
	move(t, s, d.ID, Deploying)
	if err := s.BeginApproved(ctx, d.ID, 7); !errors.Is(err, ErrNotAwaiting) {
		t.Fatalf("began twice: %v", err)
	}
	if got := get(t, s, d.ID); got.PreviousID != 7 {
		t.Fatalf("previous %d, want 7", got.PreviousID)
	}
	move(t, s, d.ID, Verifying, Succeeded)
	if _, err := decide(s, d.ID, "erin", Approve, t0); !errors.Is(err, ErrNotAwaiting) {
		t.Fatalf("approval of a finished deployment: %v", err)
	}
	r, err := s.ApprovalRequest(ctx, d.ID)
	if err != nil || r.Approvals() != 3 {
		t.Fatalf("approvals %d, want 3 (%v)", r.Approvals(), err)
	}
	// The database itself refuses a second decision by one person.
	if _, err := s.db.Exec(`INSERT INTO approvals (deployment_id, actor, role, decision, at) VALUES (?,?,?,?,?)`,
		d.ID, "bob", "admin", "approve", now()); err == nil || !strings.Contains(err.Error(), "UNIQUE") {
		t.Fatalf("second row for bob: %v", err)
	}
}

// TestApprovalsRace: approvers deciding at the same moment, each through
// its own connection as separate gantry processes would, are all recorded
// and exactly one is given the start.
func TestApprovalsRace(t *testing.T) {
	dir := t.TempDir()
	d := hold(t, open(t, dir), "1.0.0", 1)
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	starts, recorded := 0, 0
	ready := make(chan struct{})
	for i := range n {
		s := open(t, dir)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ready
			dd, err := decide(s, d.ID, string(rune('a'+i))+"-approver", Approve, t0)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if dd.Start {
				starts++
			}
			if dd.Recorded {
				recorded++
			}
		}()
	}
	close(ready)
	wg.Wait()
	if starts != 1 || recorded != n {
		t.Fatalf("%d approvals recorded and %d starts; want %d and 1", recorded, starts, n)
	}
}

// TestApprovalResume: when the process given the start never began the
// deployment (killed, or the host unreachable), an approver asking again
// after StartTimeout gets it.
func TestApprovalResume(t *testing.T) {
	s := open(t, t.TempDir())
	d := hold(t, s, "1.0.0", 1)
	if dd, err := decide(s, d.ID, "bob", Approve, t0); err != nil || !dd.Start {
		t.Fatalf("approval: %+v %v", dd, err)
	}
	if dd, err := decide(s, d.ID, "bob", Approve, t0.Add(time.Second)); err != nil || dd.Start || dd.Recorded {
		t.Fatalf("again while the starter may still begin: %+v %v", dd, err)
	}
	dd, err := decide(s, d.ID, "bob", Approve, t0.Add(StartTimeout+time.Second))
	if err != nil || !dd.Start || dd.Recorded {
		t.Fatalf("resume: %+v %v", dd, err)
	}
}

func TestApprovalReject(t *testing.T) {
	s := open(t, t.TempDir())
	d := hold(t, s, "1.0.0", 2)
	if _, err := decide(s, d.ID, "bob", Approve, t0); err != nil {
		t.Fatal(err)
	}
	dd, err := decide(s, d.ID, "carol", Reject, t0)
	if err != nil || !dd.Recorded || dd.Start || dd.Deployment.State != Cancelled {
		t.Fatalf("reject: %+v %v", dd, err)
	}
	got := get(t, s, d.ID)
	if got.State != Cancelled || got.Reason != "rejected by carol: lgtm" || got.FinishedAt == nil {
		t.Fatalf("after reject: %+v", got)
	}
	if _, err := decide(s, d.ID, "dave", Approve, t0); !errors.Is(err, ErrNotAwaiting) || !strings.Contains(err.Error(), "cancelled (rejected by carol") {
		t.Fatalf("approve after reject: %v", err)
	}
	// Withdrawn by the requester.
	d2 := hold(t, s, "1.0.1", 1)
	if _, err := decide(s, d2.ID, "alice", Reject, t0); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, d2.ID); got.Reason != "withdrawn by alice: lgtm" {
		t.Fatalf("withdrawn: %q", got.Reason)
	}
	// An approved one can no longer be rejected.
	d3 := hold(t, s, "1.0.2", 1)
	if _, err := decide(s, d3.ID, "bob", Approve, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := decide(s, d3.ID, "carol", Reject, t0); !errors.Is(err, ErrNotAwaiting) {
		t.Fatalf("reject after approval: %v", err)
	}
}

// TestApprovalCheck: the caller's policy refuses a decision inside the
// transaction, and nothing is recorded.
func TestApprovalCheck(t *testing.T) {
	s := open(t, t.TempDir())
	d := hold(t, s, "1.0.0", 1)
	no := errors.New("not allowed")
	_, err := s.Decide(context.Background(), Approval{DeploymentID: d.ID, Actor: "alice", Decision: Approve}, t0,
		func(r *ApprovalRequest, dd *Deployment) error {
			if r.RequestedBy != "alice" || dd.ID != d.ID {
				t.Errorf("check got %+v %+v", r, dd)
			}
			return no
		})
	if !errors.Is(err, no) {
		t.Fatalf("refused: %v", err)
	}
	if r, _ := s.ApprovalRequest(context.Background(), d.ID); len(r.Decisions) != 0 {
		t.Fatalf("a refused decision was recorded: %+v", r.Decisions)
	}
}

func TestApprovalExpiry(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	d := hold(t, s, "1.0.0", 1)
	later := hold(t, s, "1.0.1", 1)
	// later expires a day after d.
	if _, err := s.db.Exec(`UPDATE approval_requests SET expires_at=? WHERE deployment_id=?`,
		t0.Add(48*time.Hour).Format(time.RFC3339Nano), later.ID); err != nil {
		t.Fatal(err)
	}
	expiry := t0.Add(24 * time.Hour)
	if _, err := decide(s, d.ID, "bob", Approve, expiry); !errors.Is(err, ErrExpired) {
		t.Fatalf("approval at the expiry: %v", err)
	}
	got := get(t, s, d.ID)
	if got.State != Cancelled || !strings.Contains(got.Reason, "approval request expired at 2030-01-03T03:04:05Z with 0 of 1") {
		t.Fatalf("expired: %s %q", got.State, got.Reason)
	}
	if r, _ := s.ApprovalRequest(ctx, d.ID); len(r.Decisions) != 0 {
		t.Fatalf("an approval of an expired request was recorded: %+v", r.Decisions)
	}

	d3 := hold(t, s, "1.0.2", 1)
	ids, err := s.ExpireApprovals(ctx, "shop", "production", expiry.Add(time.Hour))
	if err != nil || len(ids) != 1 || ids[0] != d3.ID {
		t.Fatalf("expired %v (%v), want [%d]", ids, err, d3.ID)
	}
	waiting, err := s.ApprovalRequests(ctx, "shop", "", true)
	if err != nil || len(waiting) != 1 || waiting[0].DeploymentID != later.ID {
		t.Fatalf("waiting: %+v %v", waiting, err)
	}
	all, err := s.ApprovalRequests(ctx, "shop", "production", false)
	if err != nil || len(all) != 3 {
		t.Fatalf("all requests: %d %v", len(all), err)
	}
	// An approved request does not expire.
	if _, err := decide(s, later.ID, "bob", Approve, expiry); err != nil {
		t.Fatal(err)
	}
	if ids, err := s.ExpireApprovals(ctx, "shop", "", t0.Add(72*time.Hour)); err != nil || len(ids) != 0 {
		t.Fatalf("an approved request expired: %v %v", ids, err)
	}
}
