package server

import (
	"net/http"
	"time"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
)

// CanaryRequest is the body of POST /api/v1/envs/{env}/canary: what
// `gantry promote --step|--abort ENV` asks of the canary the server (or a
// gantry on its host, with its state directory) is running in env.
type CanaryRequest struct {
	// Action is "step" (advance a canary waiting at a manual step) or
	// "abort" (all traffic back to the stable release, rolled back).
	Action string `json:"action"`
}

// canarySignal passes a step or abort to the deployment running a canary
// in the environment, through the store it polls, and answers whether it
// was taken.
func (s *Server) canarySignal(c *call) (int, any, error) {
	var req CanaryRequest
	if err := c.decode(&req); err != nil {
		return 0, nil, err
	}
	if req.Action != store.CanaryStep && req.Action != store.CanaryAbort {
		return 0, nil, apiErr(http.StatusUnprocessableEntity, CodeInvalidInput, "action %q: use step (advance a manual step) or abort", req.Action)
	}
	c.object = "env/" + c.env
	c.note("action", req.Action)
	sig, err := deploy.SignalCanary(c.ctx(), s.st, s.project, c.env, req.Action, c.id.Name, 5*time.Second)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, sig, nil
}
