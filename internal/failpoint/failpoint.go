// Package failpoint kills gantry at named points of its work when the
// GANTRY_FAILPOINTS environment variable names them (comma-separated). It
// exists to test the promise that a crash at any point loses no record and
// leaves an environment recoverable: the crash tests set it; nothing else
// should.
package failpoint

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Env is the variable that arms failpoints.
const Env = "GANTRY_FAILPOINTS"

var armed = parse(os.Getenv(Env))

func parse(s string) map[string]bool {
	m := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			m[p] = true
		}
	}
	return m
}

// Hit kills the process with SIGKILL, as kill -9 would, when name is armed.
func Hit(name string) {
	if !armed[name] {
		return
	}
	fmt.Fprintf(os.Stderr, "gantry: failpoint %s: killing the process\n", name)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}
