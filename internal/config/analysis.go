package config

import (
	"bytes"
	"fmt"
	"math"
	"net/url"
	"strings"
	"text/template"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"go.yaml.in/yaml/v3"
)

// Defaults of an environment's analysis. The watch window after the switch
// is the seed notes' "roll back automatically if health checks fail within
// 5 minutes".
const (
	DefaultAnalysisInterval = 30 * time.Second
	DefaultAnalysisWatch    = 5 * time.Minute
	DefaultAnalysisTimeout  = 10 * time.Second
	// DefaultInconclusiveLimit tolerates one measurement without an answer
	// (Prometheus restarting, a scrape missed) before the analysis gives up
	// and rolls back; a release is never passed on measurements it lacks.
	DefaultInconclusiveLimit = 1
	// MinAnalysisInterval keeps a typo (1ms) from hammering Prometheus;
	// tests and benches use sub-second intervals above it.
	MinAnalysisInterval = 100 * time.Millisecond
)

// Analysis is an environment's post-deploy analysis: PromQL queries
// evaluated against a Prometheus while the new release passes its health
// gate and through a watch window after the switch. A failed analysis
// rolls the release back, even after its health gate passed.
//
//	analysis:
//	  prometheus: http://127.0.0.1:9090
//	  interval: 30s
//	  watch: 5m
//	  checks:
//	    - name: error-rate
//	      query: sum(rate(http_requests_total{code=~"5..",version="{{.Release}}"}[1m])) / sum(rate(http_requests_total{version="{{.Release}}"}[1m]))
//	      success_if: result < 0.01
type Analysis struct {
	// Prometheus is the base URL of the Prometheus HTTP API.
	Prometheus string `yaml:"prometheus" json:"prometheus"`
	// Interval, InitialDelay, FailureLimit and InconclusiveLimit are the
	// defaults of every check.
	Interval          Duration `yaml:"interval" json:"interval"`
	InitialDelay      Duration `yaml:"initial_delay" json:"initial_delay"`
	FailureLimit      int      `yaml:"failure_limit" json:"failure_limit"`
	InconclusiveLimit *int     `yaml:"inconclusive_limit" json:"inconclusive_limit"`
	// Watch is how long after the switch the checks go on; 0 ends the
	// analysis with the health gate.
	Watch Duration `yaml:"watch" json:"watch"`
	// Timeout bounds one query.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	Checks  []Check  `yaml:"checks" json:"checks"`
}

// Check is one query and the conditions on its result.
type Check struct {
	Name string `yaml:"name" json:"name"`
	// Service names the service the check is about (the {{.Service}} of
	// the query, and the service of its alert); optional.
	Service string `yaml:"service" json:"service,omitempty"`
	// Query is PromQL, a Go template over .Release, .Previous, .Env,
	// .Project, .Service and .Deployment.
	Query string `yaml:"query" json:"query"`
	// SuccessIf must hold for a measurement to succeed; FailIf, when it
	// holds, fails one. With both, a measurement that meets neither is
	// inconclusive. At least one is required.
	SuccessIf *Condition `yaml:"success_if" json:"success_if,omitempty"`
	FailIf    *Condition `yaml:"fail_if" json:"fail_if,omitempty"`
	// Interval between measurements; InitialDelay before the first.
	Interval     Duration `yaml:"interval" json:"interval"`
	InitialDelay Duration `yaml:"initial_delay" json:"initial_delay"`
	// Count ends the check after so many measurements; Duration after so
	// long. Without either it measures until the watch window ends.
	Count    int      `yaml:"count" json:"count,omitempty"`
	Duration Duration `yaml:"duration" json:"duration,omitempty"`
	// FailureLimit: the check fails when more measurements than this
	// failed. InconclusiveLimit: the same for measurements without an
	// answer (Prometheus unreachable, no data, NaN).
	FailureLimit      *int `yaml:"failure_limit" json:"failure_limit"`
	InconclusiveLimit *int `yaml:"inconclusive_limit" json:"inconclusive_limit"`
}

// QueryData is what a check's query template sees.
type QueryData struct {
	Project    string
	Env        string
	Release    string
	Previous   string
	Service    string
	Deployment int64
}

// Render fills the check's query template in.
func (c *Check) Render(d QueryData) (string, error) {
	t, err := template.New(c.Name).Option("missingkey=error").Parse(c.Query)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}

// ConditionEnv is what a condition sees: result is the query's value when
// it has exactly one (a scalar, or a vector of one sample); results all the
// samples' values.
type ConditionEnv struct {
	Result  float64   `expr:"result"`
	Results []float64 `expr:"results"`
}

// Condition is a boolean expression over a query's result, in the
// expression language of github.com/expr-lang/expr, the one Argo Rollouts
// uses for its success and failure conditions: `result < 0.01`,
// `all(results, # < 0.5)`. A condition that starts with a comparison
// (`< 0.01`) compares result.
type Condition struct {
	Source string
	prog   *vm.Program
}

// UnmarshalYAML compiles the expression, so that a typo fails the load.
func (c *Condition) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &Error{Line: n.Line, col: n.Column, Msg: "a condition is an expression like `result < 0.01`"}
	}
	cc, err := CompileCondition(n.Value)
	if err != nil {
		return &Error{Line: n.Line, col: n.Column, Msg: err.Error()}
	}
	*c = *cc
	return nil
}

// MarshalJSON writes the expression.
func (c *Condition) MarshalJSON() ([]byte, error) { return []byte(fmt.Sprintf("%q", c.Source)), nil }

// MarshalYAML writes the expression.
func (c *Condition) MarshalYAML() (any, error) { return c.Source, nil }

func (c *Condition) String() string { return c.Source }

// CompileCondition parses a condition.
func CompileCondition(src string) (*Condition, error) {
	s := strings.TrimSpace(src)
	if s == "" {
		return nil, fmt.Errorf("the condition is empty; write one like `result < 0.01`")
	}
	if strings.ContainsAny(s[:1], "<>=!") {
		s = "result " + s
	}
	prog, err := expr.Compile(s, expr.Env(ConditionEnv{}), expr.AsBool())
	if err != nil {
		msg := strings.SplitN(err.Error(), "\n", 2)[0]
		return nil, fmt.Errorf("%q is not a condition: %s; write a comparison of result, like `result < 0.01`, or of results, like `all(results, # < 0.5)`", src, msg)
	}
	return &Condition{Source: s, prog: prog}, nil
}

// Eval tells whether the condition holds for values. One value is also
// result; with several, result is NaN and the condition must use results.
func (c *Condition) Eval(values []float64) (bool, error) {
	env := ConditionEnv{Result: math.NaN(), Results: values}
	if len(values) == 1 {
		env.Result = values[0]
	}
	out, err := expr.Run(c.prog, env)
	if err != nil {
		return false, fmt.Errorf("condition %q: %w", c.Source, err)
	}
	b, _ := out.(bool)
	return b, nil
}

func (v *validator) analysis(e *Environment) {
	a := e.Analysis
	if a == nil {
		return
	}
	at := func(p ...string) []string { return append([]string{"environments", e.Name, "analysis"}, p...) }
	u, err := url.Parse(a.Prometheus)
	switch {
	case a.Prometheus == "":
		v.fail("the analysis needs a Prometheus to ask, like `prometheus: http://127.0.0.1:9090`", at("prometheus")...)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		v.fail(fmt.Sprintf("%q is not a Prometheus URL; write it like http://127.0.0.1:9090", a.Prometheus), at("prometheus")...)
	case u.User != nil:
		v.fail("put no credentials in the Prometheus URL; gantry.yaml is committed with your code", at("prometheus")...)
	}
	if a.Interval == 0 {
		a.Interval = Duration(DefaultAnalysisInterval)
	}
	if a.Interval.D() < MinAnalysisInterval {
		v.fail(fmt.Sprintf("the interval must be at least %s", MinAnalysisInterval), at("interval")...)
	}
	if a.Watch == 0 && lineOf(v.root, at("watch")...) == 0 {
		a.Watch = Duration(DefaultAnalysisWatch)
	}
	if a.Timeout == 0 {
		a.Timeout = Duration(DefaultAnalysisTimeout)
	}
	if a.FailureLimit < 0 {
		v.fail("must be 0 or more (0: the first failed measurement fails the check)", at("failure_limit")...)
	}
	if a.InconclusiveLimit == nil {
		n := DefaultInconclusiveLimit
		a.InconclusiveLimit = &n
	}
	if *a.InconclusiveLimit < 0 {
		v.fail("must be 0 or more", at("inconclusive_limit")...)
	}
	if len(a.Checks) == 0 {
		v.fail("the analysis has no checks; add one, for example\n  checks:\n    - name: error-rate\n      query: sum(rate(http_requests_total{code=~\"5..\"}[1m]))\n      success_if: result < 1", at("checks")...)
	}
	names := map[string]bool{}
	for i := range a.Checks {
		c := &a.Checks[i]
		cat := func(p ...string) []string { return at(append([]string{"checks", fmt.Sprint(i)}, p...)...) }
		if c.Name == "" {
			v.fail("a check needs a name, like error-rate", cat()...)
		} else if !nameRE.MatchString(c.Name) {
			v.fail(fmt.Sprintf("%q is not a check name; use lower case letters, digits, - and _", c.Name), cat("name")...)
		}
		if names[c.Name] {
			v.fail(fmt.Sprintf("two checks are named %q", c.Name), cat("name")...)
		}
		names[c.Name] = true
		if strings.TrimSpace(c.Query) == "" {
			v.fail("a check needs a PromQL query", cat("query")...)
		} else if _, err := c.Render(QueryData{Project: "p", Env: e.Name, Release: "1.0.0", Previous: "0.9.0", Service: c.Service, Deployment: 1}); err != nil {
			v.fail(fmt.Sprintf("the query is not a valid template: %v; it may use {{.Release}}, {{.Previous}}, {{.Env}}, {{.Project}}, {{.Service}} and {{.Deployment}}", err), cat("query")...)
		}
		if c.SuccessIf == nil && c.FailIf == nil {
			v.fail("a check needs success_if, fail_if or both, like `success_if: result < 0.01`", cat()...)
		}
		if c.Interval == 0 {
			c.Interval = a.Interval
		}
		if c.Interval.D() < MinAnalysisInterval {
			v.fail(fmt.Sprintf("the interval must be at least %s", MinAnalysisInterval), cat("interval")...)
		}
		if c.InitialDelay == 0 {
			c.InitialDelay = a.InitialDelay
		}
		if c.Count < 0 {
			v.fail("must be 1 or more", cat("count")...)
		}
		if c.Count > 0 && c.Duration > 0 {
			v.fail("a check ends after a count or after a duration, not both", cat("duration")...)
		}
		if c.FailureLimit == nil {
			n := a.FailureLimit
			c.FailureLimit = &n
		}
		if *c.FailureLimit < 0 {
			v.fail("must be 0 or more", cat("failure_limit")...)
		}
		if c.InconclusiveLimit == nil {
			n := *a.InconclusiveLimit
			c.InconclusiveLimit = &n
		}
		if *c.InconclusiveLimit < 0 {
			v.fail("must be 0 or more", cat("inconclusive_limit")...)
		}
		if c.Count > 0 && *c.FailureLimit >= c.Count {
			v.fail(fmt.Sprintf("failure_limit %d lets all %d measurements fail; make it smaller than count", *c.FailureLimit, c.Count), cat("failure_limit")...)
		}
	}
}
