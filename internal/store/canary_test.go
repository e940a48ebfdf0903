package store

import (
	"context"
	"testing"
)

// TestWithdrawSignal: a signal not taken yet is withdrawn (taken, with
// why, so no later look acts on it); one taken first is not, and says so.
func TestWithdrawSignal(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	d := create(t, s, "staging", "2.0.0")
	a := &CanarySignal{DeploymentID: d.ID, Action: SignalRollback, Actor: "alice"}
	b := &CanarySignal{DeploymentID: d.ID, Action: SignalRollback, Actor: "bob"}
	for _, sig := range []*CanarySignal{a, b} {
		if err := s.SignalCanary(ctx, sig); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := s.WithdrawSignal(ctx, a.ID, "withdrawn: test"); !ok || err != nil {
		t.Fatalf("withdrawing a pending signal: %t, %v", ok, err)
	}
	if taken, why, err := s.CanarySignalTaken(ctx, a.ID); !taken || why != "withdrawn: test" || err != nil {
		t.Errorf("the withdrawn signal: taken %t, why %q, %v", taken, why, err)
	}
	// The deployment's next look finds the other one only.
	if got, err := s.TakeCanarySignal(ctx, d.ID, "", nil); err != nil || got == nil || got.ID != b.ID {
		t.Fatalf("taken after the withdrawal: %+v, %v; want bob's", got, err)
	}
	if ok, err := s.WithdrawSignal(ctx, b.ID, "withdrawn: too late"); ok || err != nil {
		t.Errorf("withdrawing a signal already taken: %t, %v; want false", ok, err)
	}
	if taken, why, _ := s.CanarySignalTaken(ctx, b.ID); !taken || why != "" {
		t.Errorf("a signal taken and acted on: taken %t, why %q", taken, why)
	}
}
