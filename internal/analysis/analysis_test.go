package analysis

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/gantryhq/gantry/internal/config"
)

func cond(t *testing.T, s string) *config.Condition {
	t.Helper()
	c, err := config.CompileCondition(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func vec(vals ...float64) model.Vector {
	var v model.Vector
	for _, f := range vals {
		v = append(v, &model.Sample{Value: model.SampleValue(f)})
	}
	return v
}

func TestJudge(t *testing.T) {
	both := &config.Check{Name: "c", SuccessIf: cond(t, "result < 0.01"), FailIf: cond(t, "result > 0.05")}
	succ := &config.Check{Name: "c", SuccessIf: cond(t, "result < 0.01")}
	fail := &config.Check{Name: "c", FailIf: cond(t, "result > 0.05")}
	tests := []struct {
		name   string
		check  *config.Check
		v      model.Value
		err    error
		want   Phase
		reason string
	}{
		{"success", succ, vec(0.001), nil, Successful, ""},
		{"success_if does not hold", succ, vec(0.5), nil, Failed, "does not hold"},
		{"fail_if holds", fail, vec(0.5), nil, Failed, "fail_if result > 0.05 holds"},
		{"fail_if does not hold", fail, vec(0.01), nil, Successful, ""},
		{"between the two", both, vec(0.02), nil, Inconclusive, "neither"},
		{"both: failure", both, vec(0.2), nil, Failed, ""},
		{"scalar", succ, &model.Scalar{Value: 0}, nil, Successful, ""},
		{"unreachable", succ, nil, errors.New("dial tcp 127.0.0.1:1: connection refused"), Inconclusive, "Prometheus gave no answer"},
		{"bad query", succ, nil, &v1.Error{Type: v1.ErrBadData, Msg: "parse error"}, Inconclusive, "bad_data: parse error"},
		{"no series", succ, vec(), nil, Inconclusive, "no data"},
		{"NaN", succ, vec(math.NaN()), nil, Inconclusive, "NaN"},
		{"range vector", succ, model.Matrix{}, nil, Inconclusive, "instant vector"},
		{"several values, result NaN", succ, vec(0.001, 0.002), nil, Failed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Judge(tt.check, tt.v, tt.err)
			if m.Phase != tt.want || !strings.Contains(m.Reason, tt.reason) {
				t.Errorf("Judge = %s %q; want %s with %q", m.Phase, m.Reason, tt.want, tt.reason)
			}
		})
	}
}

// script answers queries from a list, one answer per call, repeating the last.
type script struct {
	mu      sync.Mutex
	answers []func() (model.Value, error)
	queries []string
}

func (s *script) Query(_ context.Context, q string, _ time.Time, _ ...v1.Option) (model.Value, v1.Warnings, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries = append(s.queries, q)
	a := s.answers[0]
	if len(s.answers) > 1 {
		s.answers = s.answers[1:]
	}
	v, err := a()
	return v, nil, err
}

func val(f float64) func() (model.Value, error) {
	return func() (model.Value, error) { return vec(f), nil }
}

func down() (model.Value, error) { return nil, errors.New("connection refused") }

func newCfg(t *testing.T, watch time.Duration, checks ...config.Check) *config.Analysis {
	for i := range checks {
		c := &checks[i]
		if c.Interval == 0 {
			c.Interval = config.Duration(10 * time.Millisecond)
		}
		if c.FailureLimit == nil {
			c.FailureLimit = new(int)
		}
		if c.InconclusiveLimit == nil {
			one := 1
			c.InconclusiveLimit = &one
		}
		if c.Query == "" {
			c.Query = `rate(errors{version="{{.Release}}"}[1m])`
		}
	}
	return &config.Analysis{Prometheus: "http://127.0.0.1:1", Watch: config.Duration(watch), Timeout: config.Duration(time.Second), Checks: checks}
}

func TestRunVerdicts(t *testing.T) {
	two := 2
	tests := []struct {
		name    string
		watch   time.Duration
		check   config.Check
		answers []func() (model.Value, error)
		want    Phase
		reason  string
	}{
		{"count reached, all good", time.Minute, config.Check{Name: "e", Count: 3}, []func() (model.Value, error){val(0)}, Successful, ""},
		{"one failure over limit 0", time.Minute, config.Check{Name: "e", Count: 5}, []func() (model.Value, error){val(0), val(0.5)}, Failed, "1 of 2 measurements failed (limit 0)"},
		{"failures within the limit", time.Minute, config.Check{Name: "e", Count: 4, FailureLimit: &two}, []func() (model.Value, error){val(0.5), val(0.5), val(0)}, Successful, ""},
		{"unreachable is inconclusive, never success", time.Minute, config.Check{Name: "e"}, []func() (model.Value, error){down}, Inconclusive, "2 of 2 measurements were inconclusive (limit 1)"},
		{"one blip within the inconclusive limit", time.Minute, config.Check{Name: "e", Count: 3}, []func() (model.Value, error){val(0), down, val(0)}, Successful, ""},
		{"watch ends, measured well", 60 * time.Millisecond, config.Check{Name: "e"}, []func() (model.Value, error){val(0)}, Successful, ""},
		{"watch ends before any success", 0, config.Check{Name: "e", InitialDelay: config.Duration(time.Hour)}, []func() (model.Value, error){val(0)}, Inconclusive, "without a successful measurement"},
		{"duration", time.Minute, config.Check{Name: "e", Duration: config.Duration(50 * time.Millisecond)}, []func() (model.Value, error){val(0)}, Successful, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check.SuccessIf = cond(t, "result < 0.01")
			q := &script{answers: tt.answers}
			a, err := New(newCfg(t, tt.watch, tt.check), WithQuerier(q))
			if err != nil {
				t.Fatal(err)
			}
			run := a.Start(context.Background(), config.QueryData{Release: "2.0.0"}, nil)
			defer run.Stop()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rep := run.Watch(ctx)
			if rep.Phase != tt.want || !strings.Contains(rep.Reason, tt.reason) {
				t.Fatalf("phase %s %q; want %s with %q\n%+v", rep.Phase, rep.Reason, tt.want, tt.reason, rep.Checks)
			}
			if rep.Failing() != (tt.want != Successful) {
				t.Errorf("Failing() = %t", rep.Failing())
			}
			if rep.Failing() {
				if rep.DecidedAt == nil || rep.Decisive() == nil {
					t.Errorf("a failing report names no decisive check or time: %+v", rep)
				}
				select {
				case <-run.Failed():
				default:
					t.Error("Failed() is not closed")
				}
			}
			if rep.Checks[0].Query != `rate(errors{version="2.0.0"}[1m])` {
				t.Errorf("query %q not rendered", rep.Checks[0].Query)
			}
		})
	}
}

func TestFailedClosesDuringGate(t *testing.T) {
	q := &script{answers: []func() (model.Value, error){val(0), val(0.9)}}
	a, _ := New(newCfg(t, time.Minute, config.Check{Name: "e", SuccessIf: cond(t, "result < 0.01")}), WithQuerier(q))
	var mu sync.Mutex
	var seen []Measurement
	run := a.Start(context.Background(), config.QueryData{}, func(m Measurement) { mu.Lock(); seen = append(seen, m); mu.Unlock() })
	defer run.Stop()
	select {
	case <-run.Failed():
	case <-time.After(5 * time.Second):
		t.Fatal("Failed() never closed before Watch was called")
	}
	rep := run.Report()
	if rep.Phase != Failed || rep.Checks[0].Measurements[1].Values[0] != 0.9 {
		t.Errorf("report: %+v", rep)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 2 || seen[1].Phase != Failed {
		t.Errorf("onMeasure saw %v", seen)
	}
}

func TestReportJSONWithNaN(t *testing.T) {
	m := Measurement{Check: "c", Phase: Inconclusive, Values: []Value{Value(math.NaN()), 0.5}}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back Measurement
	if err := json.Unmarshal(b, &back); err != nil || !math.IsNaN(float64(back.Values[0])) || back.Values[1] != 0.5 {
		t.Errorf("%s -> %+v, %v", b, back, err)
	}
}
