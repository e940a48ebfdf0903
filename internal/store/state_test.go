package store

import (
	"strings"
	"testing"
)

var allStates = []State{Pending, AwaitingApproval, Deploying, Verifying, Succeeded, Failed, RolledBack, Cancelled}

// TestTransitions checks every pair of states against the state machine as
// the deploy engine relies on it, written out here independently of the
// transitions map so that a change to the map has to change this too.
func TestTransitions(t *testing.T) {
	allowed := map[[2]State]bool{
		{Pending, AwaitingApproval}: true,
		{Pending, Deploying}:        true,
		{Pending, Failed}:           true,
		{Pending, Cancelled}:        true,

		{AwaitingApproval, Deploying}: true,
		{AwaitingApproval, Cancelled}: true,
		{AwaitingApproval, Failed}:    true,

		{Deploying, Verifying}:  true,
		{Deploying, Failed}:     true,
		{Deploying, RolledBack}: true,

		{Verifying, Succeeded}:  true,
		{Verifying, Failed}:     true,
		{Verifying, RolledBack}: true,

		// The post-deploy watch rolls back a deployment that succeeded;
		// recovery rolls back one that failed half way.
		{Succeeded, RolledBack}: true,
		{Failed, RolledBack}:    true,
	}
	for _, from := range allStates {
		for _, to := range allStates {
			err := CheckTransition(from, to)
			if want := allowed[[2]State{from, to}]; (err == nil) != want {
				t.Errorf("CheckTransition(%s, %s) = %v; want allowed=%v", from, to, err, want)
			}
			if err != nil && !strings.Contains(err.Error(), "cannot move from "+string(from)+" to "+string(to)) {
				t.Errorf("CheckTransition(%s, %s) error %q does not name both states", from, to, err)
			}
		}
	}
	// Every state of the map is a known state.
	for from, tos := range transitions {
		for _, to := range append([]State{from}, tos...) {
			if !contains(allStates, to) {
				t.Errorf("transitions mentions unknown state %q", to)
			}
		}
	}
}

// TestImportantTransitions names the rules the deploy path depends on.
func TestImportantTransitions(t *testing.T) {
	for _, tc := range []struct {
		from, to State
		ok       bool
		why      string
	}{
		{Pending, Deploying, true, "a deploy starts"},
		{Deploying, Succeeded, false, "success must pass the health gate in verifying"},
		{Pending, Succeeded, false, "nothing succeeds without deploying"},
		{Verifying, Succeeded, true, "the health gate passed"},
		{Succeeded, RolledBack, true, "the post-deploy watch can roll back"},
		{Failed, Deploying, false, "a failed deployment is not retried in place"},
		{RolledBack, RolledBack, false, "no self transitions"},
		{Deploying, Deploying, false, "no self transitions"},
		{Cancelled, Pending, false, "nothing leaves cancelled"},
		{Succeeded, Failed, false, "a success is not turned into a failure"},
	} {
		if got := CheckTransition(tc.from, tc.to) == nil; got != tc.ok {
			t.Errorf("%s -> %s allowed=%v, want %v: %s", tc.from, tc.to, got, tc.ok, tc.why)
		}
	}
	for _, s := range allStates {
		if s.Terminal() && CheckTransition(s, Deploying) == nil {
			t.Errorf("terminal state %s can go back to deploying", s)
		}
	}
}

func TestTerminal(t *testing.T) {
	terminal := map[State]bool{Succeeded: true, Failed: true, RolledBack: true, Cancelled: true}
	for _, s := range allStates {
		if s.Terminal() != terminal[s] {
			t.Errorf("%s.Terminal() = %v", s, s.Terminal())
		}
		if s.String() != string(s) {
			t.Errorf("String() = %q", s.String())
		}
		// Only non-terminal states and the two that may be rolled back
		// have a way out.
		if _, out := transitions[s]; out && s.Terminal() && s != Succeeded && s != Failed {
			t.Errorf("terminal state %s has transitions", s)
		}
	}
	if State("bogus").Terminal() {
		t.Error("unknown state is terminal")
	}
	if CheckTransition("bogus", Pending) == nil || CheckTransition(Pending, "bogus") == nil {
		t.Error("transition with an unknown state allowed")
	}
}

func contains(l []State, s State) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
