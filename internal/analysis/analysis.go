// Package analysis checks a release against Prometheus: the PromQL queries
// of an environment's analysis, measured on an interval while the release
// passes its health gate and through a watch window after the switch, each
// measurement judged by the check's conditions. A check fails when more
// measurements failed than its failure limit allows, and is inconclusive
// when more had no answer (Prometheus unreachable, no data, NaN) than its
// inconclusive limit allows. Inconclusive is never success: the deploy
// engine rolls back on both.
package analysis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/gantryhq/gantry/internal/config"
)

// Phase is where a measurement, a check or a whole analysis stands.
type Phase string

// The phases. A measurement is successful, failed or inconclusive; a check
// and an analysis are running until they are one of those. An analysis
// whose gantry stopped while it watched (kill -9) is recorded as
// interrupted by the next gantry: no verdict, the release kept serving.
const (
	Running      Phase = "running"
	Successful   Phase = "successful"
	Failed       Phase = "failed"
	Inconclusive Phase = "inconclusive"
	Interrupted  Phase = "interrupted"
)

func (p Phase) String() string { return string(p) }

// Done says whether the phase is final.
func (p Phase) Done() bool { return p != Running }

// Value is a sample value; NaN and infinities print as strings in JSON,
// which has no numbers for them.
type Value float64

// MarshalJSON writes the number, or "NaN", "+Inf", "-Inf".
func (v Value) MarshalJSON() ([]byte, error) {
	f := float64(v)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return json.Marshal(strconv.FormatFloat(f, 'g', -1, 64))
	}
	return json.Marshal(f)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (v *Value) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		f, err := strconv.ParseFloat(s, 64)
		*v = Value(f)
		return err
	}
	var f float64
	err := json.Unmarshal(b, &f)
	*v = Value(f)
	return err
}

// Measurement is one evaluation of a check's query.
type Measurement struct {
	Check  string    `json:"check"`
	At     time.Time `json:"at"`
	Phase  Phase     `json:"phase"`
	Values []Value   `json:"values,omitempty"`
	// Reason says why a measurement failed or was inconclusive.
	Reason string `json:"reason,omitempty"`
}

func (m Measurement) String() string {
	vals := make([]string, len(m.Values))
	for i, v := range m.Values {
		vals[i] = strconv.FormatFloat(float64(v), 'g', 4, 64)
	}
	s := fmt.Sprintf("%s: %s", m.Check, m.Phase)
	if len(vals) > 0 {
		s += " at " + strings.Join(vals, ", ")
	}
	if m.Reason != "" {
		s += " (" + m.Reason + ")"
	}
	return s
}

var newlines = regexp.MustCompile(`\s*\n\s*`)

// keepMeasurements bounds a check's recorded measurements: the first ones
// and the latest, which show the trend and the verdict.
const keepMeasurements = 20

// CheckReport is what a check measured and how it stands.
type CheckReport struct {
	Name    string `json:"name"`
	Service string `json:"service,omitempty"`
	// Query is the rendered PromQL; SuccessIf and FailIf the conditions
	// (the thresholds).
	Query             string        `json:"query"`
	SuccessIf         string        `json:"success_if,omitempty"`
	FailIf            string        `json:"fail_if,omitempty"`
	Phase             Phase         `json:"phase"`
	Reason            string        `json:"reason,omitempty"`
	Count             int           `json:"count"`
	Successful        int           `json:"successful"`
	Failed            int           `json:"failed"`
	Inconclusive      int           `json:"inconclusive"`
	FailureLimit      int           `json:"failure_limit"`
	InconclusiveLimit int           `json:"inconclusive_limit"`
	Measurements      []Measurement `json:"measurements"`
}

// Report is an analysis: its verdict, and every check's measurements.
type Report struct {
	Prometheus string    `json:"prometheus"`
	Phase      Phase     `json:"phase"`
	Reason     string    `json:"reason,omitempty"`
	Started    time.Time `json:"started"`
	// DecidedAt is when the measurement that decided a failed or
	// inconclusive analysis was taken.
	DecidedAt *time.Time    `json:"decided_at,omitempty"`
	Checks    []CheckReport `json:"checks"`
}

// Failing reports whether the analysis failed or was inconclusive: either
// rolls the release back.
func (r *Report) Failing() bool { return r.Phase == Failed || r.Phase == Inconclusive }

// Decisive is the check that decided a failing analysis, nil otherwise.
func (r *Report) Decisive() *CheckReport {
	for i := range r.Checks {
		if r.Checks[i].Phase == r.Phase && r.Failing() {
			return &r.Checks[i]
		}
	}
	return nil
}

// Querier is the part of Prometheus's HTTP API an analysis uses.
type Querier interface {
	Query(ctx context.Context, query string, ts time.Time, opts ...v1.Option) (model.Value, v1.Warnings, error)
}

// Analyzer runs an environment's analysis.
type Analyzer struct {
	cfg *config.Analysis
	q   Querier
	now func() time.Time
}

// Option configures an Analyzer.
type Option func(*Analyzer)

// WithQuerier replaces the Prometheus client (tests of the logic).
func WithQuerier(q Querier) Option { return func(a *Analyzer) { a.q = q } }

// New returns an analyzer asking the Prometheus of cfg.
func New(cfg *config.Analysis, opts ...Option) (*Analyzer, error) {
	a := &Analyzer{cfg: cfg, now: time.Now}
	for _, o := range opts {
		o(a)
	}
	if a.q == nil {
		c, err := api.NewClient(api.Config{Address: cfg.Prometheus, Client: &http.Client{Timeout: cfg.Timeout.D()}})
		if err != nil {
			return nil, fmt.Errorf("prometheus %s: %w", cfg.Prometheus, err)
		}
		a.q = v1.NewAPI(c)
	}
	return a, nil
}

// Watch is how long the analysis goes on after the switch.
func (a *Analyzer) Watch() time.Duration { return a.cfg.Watch.D() }

// Run is an analysis in progress.
type Run struct {
	a       *Analyzer
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	failed  chan struct{}
	changed chan struct{}

	mu     sync.Mutex
	report Report
	// until is when checks without a count or duration end; zero while
	// the release is still gated.
	until time.Time
}

// Start begins measuring every check for the release d describes; each
// measurement is also given to onMeasure (which may be nil).
func (a *Analyzer) Start(ctx context.Context, d config.QueryData, onMeasure func(Measurement)) *Run {
	ctx, cancel := context.WithCancel(ctx)
	r := &Run{a: a, cancel: cancel, failed: make(chan struct{}), changed: make(chan struct{}, 1),
		report: Report{Prometheus: a.cfg.Prometheus, Phase: Running, Started: a.now()}}
	for i := range a.cfg.Checks {
		c := &a.cfg.Checks[i]
		cr := CheckReport{Name: c.Name, Service: c.Service, Phase: Running, FailureLimit: *c.FailureLimit, InconclusiveLimit: *c.InconclusiveLimit}
		if c.SuccessIf != nil {
			cr.SuccessIf = c.SuccessIf.Source
		}
		if c.FailIf != nil {
			cr.FailIf = c.FailIf.Source
		}
		qd := d
		qd.Service = c.Service
		q, err := c.Render(qd)
		// A query written over several lines (a YAML block) reads as one in
		// reports and messages; PromQL strings cannot hold a raw newline.
		cr.Query = strings.TrimSpace(newlines.ReplaceAllString(q, " "))
		if err != nil {
			cr.Phase, cr.Reason = Inconclusive, "query template: "+err.Error()
		}
		r.report.Checks = append(r.report.Checks, cr)
	}
	r.settle(a.now())
	for i := range a.cfg.Checks {
		if r.report.Checks[i].Phase.Done() {
			continue
		}
		r.wg.Add(1)
		go r.measure(ctx, i, onMeasure)
	}
	return r
}

// Failed is closed as soon as the analysis fails or is inconclusive.
func (r *Run) Failed() <-chan struct{} { return r.failed }

// Report is a copy of the analysis so far.
func (r *Run) Report() *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := r.report
	rep.Checks = make([]CheckReport, len(r.report.Checks))
	for i, c := range r.report.Checks {
		c.Measurements = append([]Measurement(nil), c.Measurements...)
		rep.Checks[i] = c
	}
	return &rep
}

// Stop ends the measurements; the report keeps what they found.
func (r *Run) Stop() {
	r.cancel()
	r.wg.Wait()
}

// Watch lets the analysis go on for its watch window from now, and returns
// its verdict once every check is done, one has failed, or the window has
// ended: then checks still measuring pass when they had a successful
// measurement and no more failed or inconclusive ones than their limits,
// and are inconclusive when they had none. When ctx ends first, the
// report is returned as it stands (still running).
func (r *Run) Watch(ctx context.Context) *Report {
	r.mu.Lock()
	r.until = r.a.now().Add(r.a.Watch())
	until := r.until
	r.mu.Unlock()
	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	for {
		if rep := r.Report(); rep.Phase.Done() {
			r.Stop()
			return rep
		}
		select {
		case <-ctx.Done():
			r.Stop()
			return r.Report()
		case <-timer.C:
			r.Stop()
			r.mu.Lock()
			now := r.a.now()
			for i := range r.report.Checks {
				c := &r.report.Checks[i]
				if !c.Phase.Done() {
					c.Phase, c.Reason = endPhase(c, "the watch window ended")
				}
			}
			r.settle(now)
			r.mu.Unlock()
			return r.Report()
		case <-r.changed:
		}
	}
}

// endPhase is the phase of a check that ran out of time or count.
func endPhase(c *CheckReport, why string) (Phase, string) {
	if c.Successful == 0 {
		return Inconclusive, why + " without a successful measurement"
	}
	return Successful, ""
}

// measure runs check i until it is done or ctx ends.
func (r *Run) measure(ctx context.Context, i int, onMeasure func(Measurement)) {
	defer r.wg.Done()
	c := &r.a.cfg.Checks[i]
	start := r.a.now()
	wait := c.InitialDelay.D()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		r.mu.Lock()
		query := r.report.Checks[i].Query
		r.mu.Unlock()
		m := r.a.measure(ctx, c, query)
		if ctx.Err() != nil {
			return // stopped mid-query: not a measurement
		}
		if onMeasure != nil {
			onMeasure(m)
		}
		r.mu.Lock()
		cr := &r.report.Checks[i]
		record(cr, m, *c.FailureLimit, *c.InconclusiveLimit)
		if !cr.Phase.Done() && ((c.Count > 0 && cr.Count >= c.Count) || (c.Duration > 0 && m.At.Sub(start) >= c.Duration.D())) {
			cr.Phase, cr.Reason = endPhase(cr, "the check ended")
		}
		done := cr.Phase.Done()
		r.settle(m.At)
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
		if done {
			return
		}
		wait = c.Interval.D() - r.a.now().Sub(m.At)
	}
}

// record adds a measurement to a check and applies its limits.
func record(cr *CheckReport, m Measurement, failureLimit, inconclusiveLimit int) {
	cr.Count++
	switch m.Phase {
	case Successful:
		cr.Successful++
	case Failed:
		cr.Failed++
	case Inconclusive:
		cr.Inconclusive++
	}
	if len(cr.Measurements) >= keepMeasurements {
		// Keep the first half, shift the rest.
		half := keepMeasurements / 2
		cr.Measurements = append(cr.Measurements[:half], cr.Measurements[half+1:]...)
	}
	cr.Measurements = append(cr.Measurements, m)
	switch {
	case cr.Failed > failureLimit:
		cr.Phase = Failed
		cr.Reason = fmt.Sprintf("%d of %d measurements failed (limit %d); last: %s", cr.Failed, cr.Count, failureLimit, m)
	case cr.Inconclusive > inconclusiveLimit:
		cr.Phase = Inconclusive
		cr.Reason = fmt.Sprintf("%d of %d measurements were inconclusive (limit %d); last: %s", cr.Inconclusive, cr.Count, inconclusiveLimit, m)
	}
}

// settle derives the analysis's phase from its checks' (mu held): failed
// when one failed, inconclusive when one was, successful when all were.
func (r *Run) settle(at time.Time) {
	if r.report.Phase.Done() {
		return
	}
	all := true
	for _, want := range []Phase{Failed, Inconclusive} {
		for _, c := range r.report.Checks {
			if c.Phase == want {
				r.report.Phase = want
				r.report.Reason = fmt.Sprintf("check %s %s: %s; query: %s", c.Name, want, c.Reason, c.Query)
				r.report.DecidedAt = &at
				close(r.failed)
				return
			}
		}
	}
	for _, c := range r.report.Checks {
		all = all && c.Phase == Successful
	}
	if all {
		r.report.Phase = Successful
	}
}

// measure evaluates a check's query now.
func (a *Analyzer) measure(ctx context.Context, c *config.Check, query string) Measurement {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout.D())
	defer cancel()
	at := a.now()
	v, _, err := a.q.Query(ctx, query, at, v1.WithTimeout(a.cfg.Timeout.D()))
	m := Judge(c, v, err)
	m.At = at
	return m
}

// Judge turns a query's answer into a measurement of check c: inconclusive
// when Prometheus gave no usable answer, else failed when fail_if holds,
// successful when success_if holds, and when only one condition is given
// the other outcome when it does not hold.
func Judge(c *config.Check, v model.Value, err error) Measurement {
	m := Measurement{Check: c.Name, Phase: Inconclusive}
	if err != nil {
		m.Reason = "Prometheus gave no answer: " + describe(err)
		return m
	}
	var values []float64
	switch v := v.(type) {
	case model.Vector:
		for _, s := range v {
			values = append(values, float64(s.Value))
		}
	case *model.Scalar:
		values = []float64{float64(v.Value)}
	default:
		m.Reason = fmt.Sprintf("the query returns a %s; an analysis needs an instant vector or a scalar", v.Type())
		return m
	}
	for _, f := range values {
		m.Values = append(m.Values, Value(f))
	}
	if len(values) == 0 {
		m.Reason = "no data: the query matched no series"
		return m
	}
	for _, f := range values {
		if math.IsNaN(f) {
			m.Reason = "no data: the query gave NaN (a rate over no requests is 0/0)"
			return m
		}
	}
	if c.FailIf != nil {
		bad, err := c.FailIf.Eval(values)
		if err != nil {
			m.Reason = err.Error()
			return m
		}
		if bad {
			m.Phase, m.Reason = Failed, "fail_if "+c.FailIf.Source+" holds"
			return m
		}
		if c.SuccessIf == nil {
			m.Phase = Successful
			return m
		}
	}
	ok, err := c.SuccessIf.Eval(values)
	switch {
	case err != nil:
		m.Reason = err.Error()
	case ok:
		m.Phase = Successful
	case c.FailIf == nil:
		m.Phase, m.Reason = Failed, "success_if "+c.SuccessIf.Source+" does not hold"
	default:
		m.Reason = "neither success_if nor fail_if holds"
	}
	return m
}

// describe shortens a client error to what a user can act on.
func describe(err error) string {
	var pe *v1.Error
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s: %s", pe.Type, pe.Msg)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return err.Error()
}
