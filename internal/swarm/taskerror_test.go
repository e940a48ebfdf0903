package swarm

import (
	"testing"

	"github.com/docker/docker/api/types/swarm"
)

// TestTaskError: how a failed task is told, for each way it ends. A task
// Swarm stopped for an unhealthy container ends complete, often with exit
// code 0; the message must point at the healthcheck, not at the exit.
func TestTaskError(t *testing.T) {
	nodes := map[string]string{"n1": "vm (manager)"}
	task := func(state swarm.TaskState, code int, err string) swarm.Task {
		return swarm.Task{ID: "r188q823g830x8tk9e29t3moi", NodeID: "n1", Status: swarm.TaskStatus{State: state, Err: err,
			ContainerStatus: &swarm.ContainerStatus{ContainerID: "c1", ExitCode: code}}}
	}
	cases := []struct {
		name      string
		task      swarm.Task
		unhealthy string
		checked   bool
		want      string
	}{
		{"unhealthy, seen on the manager", task(swarm.TaskStateComplete, 0, ""), "its healthcheck failed 2 times in a row (last: exit code 1: status 500)", true,
			"r188q823g830 on vm (manager): unhealthy: its healthcheck failed 2 times in a row (last: exit code 1: status 500); Swarm stopped it before the monitor period was over"},
		{"stopped cleanly with a healthcheck, on a worker", task(swarm.TaskStateComplete, 0, ""), "", true,
			"r188q823g830 on vm (manager): ended with exit code 0 before the monitor period was over; Swarm stops a container that fails its healthcheck this way, so check the service's healthcheck"},
		{"ended without a healthcheck", task(swarm.TaskStateComplete, 0, ""), "", false,
			"r188q823g830 on vm (manager): ended with exit code 0 before the monitor period was over"},
		{"exited non-zero", task(swarm.TaskStateComplete, 3, ""), "", true,
			"r188q823g830 on vm (manager): ended with exit code 3 before the monitor period was over"},
		{"failed", task(swarm.TaskStateFailed, 2, "task: non-zero exit (2)"), "", true,
			"r188q823g830 on vm (manager): failed: task: non-zero exit (2) (exit code 2)"},
		{"unknown node", swarm.Task{ID: "abc", NodeID: "zzzzzzzzzzzzzzzz", Status: swarm.TaskStatus{State: swarm.TaskStateRejected, Err: "no such image"}}, "", false,
			"abc on zzzzzzzzzzzz: rejected: no such image"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := taskError(tc.task, nodes, tc.unhealthy, tc.checked); got != tc.want {
				t.Errorf("taskError:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}
