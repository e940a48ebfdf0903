package store

import "fmt"

// State is where a deployment is in its life.
type State string

// The states of a deployment. pending -> deploying -> verifying -> succeeded
// is the happy path; failed and rolled_back end a deployment that did not
// make it; awaiting_approval and cancelled belong to protected environments.
const (
	Pending          State = "pending"
	AwaitingApproval State = "awaiting_approval"
	Deploying        State = "deploying"
	Verifying        State = "verifying"
	Succeeded        State = "succeeded"
	Failed           State = "failed"
	RolledBack       State = "rolled_back"
	Cancelled        State = "cancelled"
)

func (s State) String() string { return string(s) }

// Terminal says whether a deployment in this state is finished.
func (s State) Terminal() bool {
	switch s {
	case Succeeded, Failed, RolledBack, Cancelled:
		return true
	}
	return false
}

// transitions is the one place that decides which state may follow which.
var transitions = map[State][]State{
	Pending:          {AwaitingApproval, Deploying, Failed, Cancelled},
	AwaitingApproval: {Deploying, Cancelled, Failed},
	Deploying:        {Verifying, Failed, RolledBack},
	Verifying:        {Succeeded, Failed, RolledBack},
	// A deployment that succeeded can still be rolled back later by its
	// post-deploy watch; failed ones may be rolled back once recovered.
	Succeeded: {RolledBack},
	Failed:    {RolledBack},
}

// CheckTransition returns an error when from -> to is not allowed.
func CheckTransition(from, to State) error {
	for _, s := range transitions[from] {
		if s == to {
			return nil
		}
	}
	return fmt.Errorf("cannot move from %s to %s", from, to)
}
