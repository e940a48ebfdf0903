package deploy

import (
	"reflect"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gantryhq/gantry/internal/runtime"
)

func TestTiers(t *testing.T) {
	dep := func(names ...string) types.DependsOnConfig {
		d := types.DependsOnConfig{}
		for _, n := range names {
			d[n] = types.ServiceDependency{Condition: types.ServiceConditionHealthy, Required: true}
		}
		return d
	}
	svc := func(name string, deps ...string) *runtime.Service {
		return &runtime.Service{Name: name, Config: types.ServiceConfig{Name: name, WorkloadSpec: types.WorkloadSpec{DependsOn: dep(deps...)}}}
	}
	plan := &runtime.Plan{
		Order: []string{"cache", "db", "api", "worker", "web"},
		Services: map[string]*runtime.Service{
			"cache": svc("cache"), "db": svc("db"), "api": svc("api", "db", "cache"),
			"worker": svc("worker", "db"), "web": svc("web", "api"),
		},
	}
	want := [][]string{{"cache", "db"}, {"api", "worker"}, {"web"}}
	if got := Tiers(plan); !reflect.DeepEqual(got, want) {
		t.Fatalf("tiers %v, want %v", got, want)
	}
}
