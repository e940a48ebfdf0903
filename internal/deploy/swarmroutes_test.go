package deploy

import (
	"reflect"
	"testing"

	"github.com/gantryhq/gantry/internal/runtime"
)

// TestRoutedPorts: during a rollout the serving and the new release's
// routes count together, a port each release gave a service.
func TestRoutedPorts(t *testing.T) {
	plan := func(routes map[string]int, job string) *runtime.Plan {
		p := &runtime.Plan{Services: map[string]*runtime.Service{}}
		for _, name := range []string{"api", "web", "migrate"} {
			s := &runtime.Service{Name: name, Job: name == job}
			if port, ok := routes[name]; ok {
				s.Route = &runtime.Route{Port: port}
			}
			p.Services[name] = s
			p.Order = append(p.Order, name)
		}
		return p
	}
	serving := plan(map[string]int{"web": 8080}, "")
	next := plan(map[string]int{"web": 9090, "api": 8000, "migrate": 1}, "migrate")
	names, ports, routes := routedPorts([]*runtime.Plan{serving, next})
	if want := []string{"web", "api"}; !reflect.DeepEqual(names, want) {
		t.Errorf("names %v, want %v", names, want)
	}
	if want := map[string][]int{"web": {8080, 9090}, "api": {8000}}; !reflect.DeepEqual(ports, want) {
		t.Errorf("ports %v, want %v", ports, want)
	}
	if routes["web"].Port != 9090 {
		t.Errorf("web's route %+v, want the newest plan's (port 9090)", routes["web"])
	}
	if names, _, _ := routedPorts(nil); names != nil {
		t.Errorf("no plans: %v", names)
	}
}
