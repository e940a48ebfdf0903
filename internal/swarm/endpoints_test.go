package swarm

import (
	"testing"

	"github.com/docker/docker/api/types/swarm"
)

func TestNodeAddr(t *testing.T) {
	for _, tc := range []struct {
		status, manager, want string
	}{
		{"10.210.0.2", "", "10.210.0.2"},
		{"127.0.0.1", "127.0.0.1:2377", "127.0.0.1"},
		// A manager whose engine listens everywhere reports 0.0.0.0.
		{"0.0.0.0", "192.168.1.5:2377", "192.168.1.5"},
		{"0.0.0.0", "", ""},
		{"", "[::1]:2377", "::1"},
		{"0.0.0.0", "0.0.0.0:2377", ""},
	} {
		n := swarm.Node{Status: swarm.NodeStatus{Addr: tc.status}}
		if tc.manager != "" {
			n.ManagerStatus = &swarm.ManagerStatus{Addr: tc.manager}
		}
		if got := nodeAddr(n); got != tc.want {
			t.Errorf("nodeAddr(status %q, manager %q) = %q, want %q", tc.status, tc.manager, got, tc.want)
		}
	}
}
