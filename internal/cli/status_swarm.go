package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/gantryhq/gantry/internal/deploy"
)

// swarmStatus says whether a status is a swarm's: its services have
// replicas.
func swarmStatus(st *deploy.Status) bool {
	for _, s := range st.Services {
		if s.Replicas != nil {
			return true
		}
	}
	return false
}

// printSwarmServices prints a swarm environment's services: replicas
// running/desired in all, and per node.
func printSwarmServices(w io.Writer, st *deploy.Status) {
	fmt.Fprintln(w, "  SERVICE\tRELEASE\tIMAGE\tSTATE\tREPLICAS\tNODES")
	for _, s := range st.Services {
		replicas := "-"
		if s.Replicas != nil {
			replicas = fmt.Sprintf("%d/%d", s.Replicas.Running, s.Replicas.Desired)
		}
		var nodes []string
		for _, n := range s.Nodes {
			nodes = append(nodes, fmt.Sprintf("%s %d/%d", n.Node, n.Running, n.Desired))
		}
		if len(nodes) == 0 {
			nodes = []string{"-"}
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Release, s.Image, s.State, replicas, strings.Join(nodes, ", "))
	}
}
