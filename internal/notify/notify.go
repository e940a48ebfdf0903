// Package notify tells people about what happens to their releases: a
// deployment failed or was rolled back, an analysis failed, a promotion
// waits for approval, a service turned unhealthy after a successful deploy.
// Alerts go to an Alertmanager's v2 API when notify.alertmanager is set;
// otherwise gantry routes them itself by severity to its built-in
// receivers (a generic webhook, Slack, PagerDuty Events v2, email over
// SMTP with STARTTLS), sends them again on an interval until they resolve,
// escalates the ones nobody acknowledged, and retries failed deliveries with
// exponential backoff. Every alert and every delivery attempt is recorded
// in the store; receivers' secrets never reach a log, an error or the store.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/store"
)

// Alert names, the alertname label in Alertmanager.
const (
	DeploymentFailed = "GantryDeploymentFailed"
	RolledBack       = "GantryRolledBack"
	AnalysisFailed   = "GantryAnalysisFailed"
	ApprovalWaiting  = "GantryApprovalWaiting"
	ServiceUnhealthy = "GantryServiceUnhealthy"
)

// Kinds of delivery, recorded with each attempt.
const (
	KindFiring     = "firing"
	KindRepeat     = "repeat"
	KindEscalation = "escalation"
	KindResolved   = "resolved"
)

// Notifier sends one alert to one receiver. retry says whether trying
// again may help (a timeout, a 5xx, a 429), as in Alertmanager's notify
// package; err must not contain the receiver's secrets.
type Notifier interface {
	Notify(ctx context.Context, a *store.Alert, kind string) (retry bool, err error)
}

// Manager records alerts and delivers them.
type Manager struct {
	cfg       *config.Notify
	st        *store.Store
	project   string
	log       *slog.Logger
	now       func() time.Time
	receivers map[string]Notifier
	am        *alertmanager
}

// Option configures a Manager.
type Option func(*Manager)

// WithLogger sets the structured logger.
func WithLogger(l *slog.Logger) Option { return func(m *Manager) { m.log = l } }

// WithNotifier replaces the receiver named name (tests of the routing).
func WithNotifier(name string, n Notifier) Option {
	return func(m *Manager) { m.receivers[name] = n }
}

// New returns the manager of project's alerts. It fails when a receiver's
// secret cannot be read, naming the file or variable.
func New(cfg *config.Notify, st *store.Store, project string, opts ...Option) (*Manager, error) {
	m := &Manager{cfg: cfg, st: st, project: project, log: slog.New(slog.DiscardHandler), now: time.Now, receivers: map[string]Notifier{}}
	if cfg.Alertmanager != "" {
		m.am = &alertmanager{url: cfg.Alertmanager, client: httpClient(cfg.Timeout.D())}
	}
	for name, r := range cfg.Receivers {
		if _, err := r.Secret.Value(); err != nil {
			return nil, fmt.Errorf("notify.receivers.%s: %w; create it or fix gantry.yaml", name, err)
		}
		n, err := newReceiver(r, cfg.Timeout.D())
		if err != nil {
			return nil, fmt.Errorf("notify.receivers.%s: %w", name, err)
		}
		m.receivers[name] = n
	}
	for _, o := range opts {
		o(m)
	}
	return m, nil
}

// Fire records a firing alert and sends it, unless the same condition
// fires already (then nothing is sent: repeats follow the route's
// interval).
func (m *Manager) Fire(ctx context.Context, a store.Alert) (*store.Alert, error) {
	if a.Project == "" {
		a.Project = m.project
	}
	if a.Fingerprint == "" {
		a.Fingerprint = Fingerprint(a.Name, a.Project, a.Env, a.Service)
	}
	if a.StartsAt.IsZero() {
		a.StartsAt = m.now()
	}
	stored, created, err := m.st.FireAlert(ctx, &a)
	if err != nil || !created {
		return stored, err
	}
	m.log.Info("alert firing", "id", stored.ID, "alert", stored.Name, "severity", stored.Severity, "env", stored.Env, "service", stored.Service)
	return stored, m.deliver(ctx, stored, KindFiring)
}

// Resolve ends the firing alert of a condition, and says so where it was
// sent. It does nothing when the condition does not fire.
func (m *Manager) Resolve(ctx context.Context, fingerprint string) error {
	a, err := m.st.ResolveAlert(ctx, fingerprint, m.now())
	if err != nil || a == nil {
		return err
	}
	m.log.Info("alert resolved", "id", a.ID, "alert", a.Name, "env", a.Env, "service", a.Service)
	return m.deliver(ctx, a, KindResolved)
}

// Fingerprint identifies a condition: the same alert about the same
// environment and service.
func Fingerprint(name, project, env, service string) string {
	return name + "/" + project + "/" + env + "/" + service
}

// Ack acknowledges an alert: it is not escalated any more.
func (m *Manager) Ack(ctx context.Context, id int64, by string) (*store.Alert, error) {
	return Ack(ctx, m.st, id, by)
}

// Ack acknowledges an alert in the store, without a Manager (the CLI).
func Ack(ctx context.Context, st *store.Store, id int64, by string) (*store.Alert, error) {
	a, err := st.AckAlert(ctx, id, by, time.Now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no alert %d; `gantry alerts --all` lists them: %w", id, err)
	}
	return a, err
}

// route is the first route that takes a severity.
func (m *Manager) route(severity string) *config.Route {
	for i := range m.cfg.Routes {
		if r := &m.cfg.Routes[i]; r.Severity == "" || r.Severity == severity {
			return r
		}
	}
	return nil
}

// deliver sends an alert where it goes: to Alertmanager, or to the
// receivers of its route (the escalation's too, once escalated).
func (m *Manager) deliver(ctx context.Context, a *store.Alert, kind string) error {
	if m.am != nil {
		err := m.send(ctx, a, "alertmanager", m.am, kind)
		if err == nil {
			m.st.MarkAlertSent(ctx, a.ID, m.now(), false)
		}
		return err
	}
	r := m.route(a.Severity)
	if r == nil {
		m.log.Warn("no route takes the alert", "alert", a.Name, "severity", a.Severity)
		return nil
	}
	to := r.To
	if kind != KindFiring && a.EscalatedAt != nil {
		to = append(append([]string{}, to...), r.EscalateTo...)
	}
	if kind == KindEscalation {
		to = r.EscalateTo
	}
	var errs []error
	for _, name := range to {
		if err := m.send(ctx, a, name, m.receivers[name], kind); err != nil {
			errs = append(errs, err)
		}
	}
	m.st.MarkAlertSent(ctx, a.ID, m.now(), kind == KindEscalation)
	return errors.Join(errs...)
}

// send delivers to one receiver, retrying with exponential backoff while
// the failure may pass, and records every attempt.
func (m *Manager) send(ctx context.Context, a *store.Alert, name string, n Notifier, kind string) error {
	wait := m.cfg.Retry.Initial.D()
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, m.cfg.Timeout.D())
		retry, err := n.Notify(actx, a, kind)
		cancel()
		d := store.Delivery{AlertID: a.ID, Receiver: name, Kind: kind, Attempt: attempt, OK: err == nil, At: m.now()}
		if err != nil {
			d.Error = err.Error()
		}
		if rerr := m.st.AddDelivery(context.WithoutCancel(ctx), d); rerr != nil {
			m.log.Warn("recording a delivery failed", "err", rerr)
		}
		if err == nil {
			return nil
		}
		m.log.Warn("alert delivery failed", "alert", a.ID, "receiver", name, "attempt", attempt, "retry", retry, "err", err)
		if !retry || attempt >= m.cfg.Retry.Attempts {
			return fmt.Errorf("alert %d to %s (%s): %w", a.ID, name, kind, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, m.cfg.Retry.Max.D())
	}
}

// Tick does what time asks: firing alerts are posted to Alertmanager
// again every notify.resend, or sent again every route's repeat, and
// escalated when unacknowledged after escalate_after; approval alerts
// follow the approval requests in the store.
func (m *Manager) Tick(ctx context.Context) error {
	var errs []error
	if err := m.syncApprovals(ctx); err != nil {
		errs = append(errs, err)
	}
	firing, err := m.st.Alerts(ctx, false, 0)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	now := m.now()
	for _, a := range firing {
		since := func(t *time.Time) time.Duration {
			if t == nil {
				return now.Sub(a.StartsAt)
			}
			return now.Sub(*t)
		}
		if m.am != nil {
			if since(a.LastSentAt) >= m.cfg.Resend.D() {
				errs = append(errs, m.deliver(ctx, a, KindRepeat))
			}
			continue
		}
		r := m.route(a.Severity)
		if r == nil {
			continue
		}
		if r.EscalateAfter > 0 && a.AckedAt == nil && a.EscalatedAt == nil && now.Sub(a.StartsAt) >= r.EscalateAfter.D() {
			m.log.Info("escalating unacknowledged alert", "id", a.ID, "alert", a.Name, "to", r.EscalateTo)
			errs = append(errs, m.deliver(ctx, a, KindEscalation))
		}
		if since(a.LastSentAt) >= r.Repeat.D() {
			errs = append(errs, m.deliver(ctx, a, KindRepeat))
		}
	}
	return errors.Join(errs...)
}

// Run ticks every interval until ctx ends.
func (m *Manager) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := m.Tick(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("alerts", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
