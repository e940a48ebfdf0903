package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/store"
)

func httpClient(timeout time.Duration) *http.Client { return &http.Client{Timeout: timeout} }

func newReceiver(r *config.Receiver, timeout time.Duration) (Notifier, error) {
	c := httpClient(timeout)
	switch r.Type {
	case config.ReceiverWebhook:
		return &webhook{secret: r.Secret, client: c}, nil
	case config.ReceiverSlack:
		return &slack{secret: r.Secret, channel: r.Channel, client: c}, nil
	case config.ReceiverPagerDuty:
		return &pagerduty{secret: r.Secret, url: r.EventsURL, client: c}, nil
	case config.ReceiverEmail:
		e := &email{cfg: r}
		if r.CAFile != "" {
			pem, err := os.ReadFile(r.CAFile)
			if err != nil {
				return nil, fmt.Errorf("ca_file: %w", err)
			}
			e.roots = x509.NewCertPool()
			if !e.roots.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca_file %s holds no PEM certificate", r.CAFile)
			}
		}
		return e, nil
	}
	return nil, fmt.Errorf("unknown receiver type %q", r.Type)
}

// status is firing or resolved, as Alertmanager says it.
func status(kind string) string {
	if kind == KindResolved {
		return "resolved"
	}
	return "firing"
}

// title is the one line every receiver shows.
func title(a *store.Alert, kind string) string {
	s := fmt.Sprintf("[%s:%s] %s", strings.ToUpper(status(kind)), a.Severity, a.Name)
	where := a.Env
	if a.Service != "" {
		where += "/" + a.Service
	}
	if where != "" {
		s += " " + a.Project + "/" + where
	}
	if a.Release != "" {
		s += " release " + a.Release
	}
	if kind == KindEscalation {
		s += " (escalated: unacknowledged since " + a.StartsAt.UTC().Format(time.RFC3339) + ")"
	}
	return s + ": " + a.Summary
}

// postJSON posts body to the secret URL u and classifies the outcome. The
// URL never appears in the error: it is the secret (webhooks, Slack).
func postJSON(ctx context.Context, c *http.Client, u string, body any, secrets ...string) (bool, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return false, redact(err, append(secrets, u)...)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gantry")
	resp, err := c.Do(req)
	if err != nil {
		return true, redact(err, append(secrets, u)...)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	retry := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
	return retry, redact(fmt.Errorf("POST %s: %s: %s", redactedURL(u), resp.Status, strings.TrimSpace(string(msg))), append(secrets, u)...)
}

// redactedURL keeps a URL's scheme and host, which say where a delivery
// went; the path and query of a webhook are its secret.
func redactedURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return config.Redacted
	}
	return p.Scheme + "://" + p.Host + "/" + config.Redacted
}

// redact removes secrets from an error's text.
func redact(err error, secrets ...string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = &url.Error{Op: ue.Op, URL: redactedURL(ue.URL), Err: ue.Err}
	}
	msg := err.Error()
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, config.Redacted)
		}
	}
	return errors.New(msg)
}

// webhook posts the alert as JSON to a URL.
type webhook struct {
	secret config.Secret
	client *http.Client
}

// WebhookMessage is what the generic webhook receiver posts.
type WebhookMessage struct {
	Version string       `json:"version"`
	Status  string       `json:"status"`
	Kind    string       `json:"kind"`
	Title   string       `json:"title"`
	Alert   *store.Alert `json:"alert"`
}

func (w *webhook) Notify(ctx context.Context, a *store.Alert, kind string) (bool, error) {
	u, err := w.secret.Value()
	if err != nil {
		return false, err
	}
	return postJSON(ctx, w.client, u, WebhookMessage{Version: "1", Status: status(kind), Kind: kind, Title: title(a, kind), Alert: a})
}

// slack posts to an incoming webhook.
type slack struct {
	secret  config.Secret
	channel string
	client  *http.Client
}

func (s *slack) Notify(ctx context.Context, a *store.Alert, kind string) (bool, error) {
	u, err := s.secret.Value()
	if err != nil {
		return false, err
	}
	text := title(a, kind)
	if a.Description != "" && kind != KindResolved {
		text += "\n" + a.Description
	}
	msg := map[string]any{"text": text}
	if s.channel != "" {
		msg["channel"] = s.channel
	}
	return postJSON(ctx, s.client, u, msg)
}

// pagerduty sends Events API v2 events: trigger, and resolve with the
// same dedup key.
type pagerduty struct {
	secret config.Secret
	url    string
	client *http.Client
}

func (p *pagerduty) Notify(ctx context.Context, a *store.Alert, kind string) (bool, error) {
	key, err := p.secret.Value()
	if err != nil {
		return false, err
	}
	action := "trigger"
	if kind == KindResolved {
		action = "resolve"
	}
	ev := map[string]any{"routing_key": key, "event_action": action, "dedup_key": a.Fingerprint}
	if action == "trigger" {
		ev["payload"] = map[string]any{
			"summary": title(a, kind), "source": "gantry/" + a.Project, "severity": a.Severity,
			"component": a.Service, "group": a.Env, "class": a.Name,
			"custom_details": map[string]any{"release": a.Release, "deployment": a.DeploymentID, "description": a.Description, "alert": a.ID},
		}
	}
	// The events URL is no secret; the routing key in the body is.
	return postJSON(ctx, p.client, p.url, ev, key)
}

// email sends through a relay with STARTTLS, which it requires.
type email struct {
	cfg   *config.Receiver
	roots *x509.CertPool
}

func (e *email) Notify(ctx context.Context, a *store.Alert, kind string) (bool, error) {
	var password string
	if e.cfg.Secret.IsSet() {
		p, err := e.cfg.Secret.Value()
		if err != nil {
			return false, err
		}
		password = p
	}
	retry, err := e.send(ctx, a, kind, password)
	if err != nil {
		return retry, redact(fmt.Errorf("email via %s: %w", e.cfg.Smarthost, err), password)
	}
	return false, nil
}

func (e *email) send(ctx context.Context, a *store.Alert, kind, password string) (bool, error) {
	host, _, _ := net.SplitHostPort(e.cfg.Smarthost)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", e.cfg.Smarthost)
	if err != nil {
		return true, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return true, err
	}
	defer c.Close()
	if err := c.Hello("gantry"); err != nil {
		return true, err
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return false, fmt.Errorf("the relay does not offer STARTTLS, and gantry sends mail only encrypted")
	}
	if err := c.StartTLS(&tls.Config{ServerName: host, RootCAs: e.roots, MinVersion: tls.VersionTLS12}); err != nil {
		return false, fmt.Errorf("STARTTLS: %w", err)
	}
	if e.cfg.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", e.cfg.Username, password, host)); err != nil {
			return false, fmt.Errorf("authentication as %s: %w", e.cfg.Username, err)
		}
	}
	if err := c.Mail(e.cfg.From); err != nil {
		return true, err
	}
	for _, to := range e.cfg.To {
		if err := c.Rcpt(to); err != nil {
			return false, err
		}
	}
	w, err := c.Data()
	if err != nil {
		return true, err
	}
	body := a.Description
	if body == "" {
		body = a.Summary
	}
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n\r\nalert %d, %s since %s\r\n",
		e.cfg.From, strings.Join(e.cfg.To, ", "), strings.ReplaceAll(title(a, kind), "\n", " "), time.Now().Format(time.RFC1123Z),
		strings.ReplaceAll(body, "\n", "\r\n"), a.ID, status(kind), a.StartsAt.UTC().Format(time.RFC3339))
	if err := w.Close(); err != nil {
		return true, err
	}
	return false, c.Quit()
}
