package config

import (
	"fmt"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Alert severities, from the most to the least urgent.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// Severities lists the severities in order of urgency.
var Severities = []string{SeverityCritical, SeverityWarning, SeverityInfo}

// Receiver types of the built-in notifiers.
const (
	ReceiverWebhook   = "webhook"
	ReceiverSlack     = "slack"
	ReceiverPagerDuty = "pagerduty"
	ReceiverEmail     = "email"
)

var receiverTypes = []string{ReceiverWebhook, ReceiverSlack, ReceiverPagerDuty, ReceiverEmail}

// Defaults of the notify section.
const (
	DefaultRepeat        = 4 * time.Hour
	DefaultResend        = time.Minute
	DefaultNotifyTimeout = 10 * time.Second
	DefaultRetryInitial  = time.Second
	DefaultRetryMax      = time.Minute
	DefaultRetryAttempts = 5
	DefaultPagerDutyURL  = "https://events.pagerduty.com/v2/enqueue"
)

// Notify is where gantry's alerts go: to an Alertmanager, which routes them
// itself, or else through gantry's own routes to its built-in receivers.
//
//	notify:
//	  routes:
//	    - { severity: critical, to: [pagerduty, slack], repeat: 30m, escalate_after: 15m, escalate_to: [email] }
//	    - { severity: warning, to: [slack] }
//	  receivers:
//	    slack: { webhook_url_file: /run/secrets/slack_webhook }
//	    pagerduty: { routing_key_file: /run/secrets/pd_key }
type Notify struct {
	// Alertmanager is the base URL of an Alertmanager; alerts are posted
	// to its v2 API and routed there.
	Alertmanager string `yaml:"alertmanager" json:"alertmanager,omitempty"`
	// Resend is how often firing alerts are posted to Alertmanager again,
	// which would otherwise resolve them after its resolve_timeout.
	Resend    Duration             `yaml:"resend" json:"resend"`
	Routes    []Route              `yaml:"routes" json:"routes,omitempty"`
	Receivers map[string]*Receiver `yaml:"receivers" json:"receivers,omitempty"`
	Retry     Retry                `yaml:"retry" json:"retry"`
	// Timeout bounds one delivery attempt.
	Timeout Duration `yaml:"timeout" json:"timeout"`
}

// Enabled reports whether alerts go anywhere.
func (n *Notify) Enabled() bool { return n.Alertmanager != "" || len(n.Routes) > 0 }

// Route sends the alerts of a severity to receivers.
type Route struct {
	// Severity is critical, warning or info; empty matches any. The first
	// route that matches an alert takes it.
	Severity string   `yaml:"severity" json:"severity,omitempty"`
	To       []string `yaml:"to" json:"to"`
	// Repeat sends a firing alert again this often until it resolves.
	Repeat Duration `yaml:"repeat" json:"repeat"`
	// EscalateAfter sends an alert nobody acknowledged (gantry alerts
	// ack) to EscalateTo as well.
	EscalateAfter Duration `yaml:"escalate_after" json:"escalate_after,omitempty"`
	EscalateTo    []string `yaml:"escalate_to" json:"escalate_to,omitempty"`
}

// Retry is how a failed delivery is tried again: from Initial, doubling up
// to Max, Attempts times in all.
type Retry struct {
	Initial  Duration `yaml:"initial" json:"initial"`
	Max      Duration `yaml:"max" json:"max"`
	Attempts int      `yaml:"attempts" json:"attempts"`
}

// Receiver is one built-in notifier. Its secrets (webhook URLs, routing
// keys, passwords) are read from a file (*_file) or an environment
// variable (*_env) when an alert is sent, never written in gantry.yaml.
type Receiver struct {
	Name string `yaml:"-" json:"-"`
	// Type is webhook, slack, pagerduty or email; it defaults to the
	// receiver's name when that is one of them.
	Type string `yaml:"type" json:"type"`

	// webhook: URL; slack: WebhookURL (an incoming webhook) and Channel.
	URLFile        string `yaml:"url_file" json:"url_file,omitempty"`
	URLEnv         string `yaml:"url_env" json:"url_env,omitempty"`
	WebhookURLFile string `yaml:"webhook_url_file" json:"webhook_url_file,omitempty"`
	WebhookURLEnv  string `yaml:"webhook_url_env" json:"webhook_url_env,omitempty"`
	Channel        string `yaml:"channel" json:"channel,omitempty"`

	// pagerduty: RoutingKey of an Events v2 integration; EventsURL
	// defaults to PagerDuty's.
	RoutingKeyFile string `yaml:"routing_key_file" json:"routing_key_file,omitempty"`
	RoutingKeyEnv  string `yaml:"routing_key_env" json:"routing_key_env,omitempty"`
	EventsURL      string `yaml:"events_url" json:"events_url,omitempty"`

	// email: through Smarthost (host:port) with STARTTLS, which is
	// required; CAFile adds a CA to trust (a private relay).
	To           []string `yaml:"to" json:"to,omitempty"`
	From         string   `yaml:"from" json:"from,omitempty"`
	Smarthost    string   `yaml:"smarthost" json:"smarthost,omitempty"`
	Username     string   `yaml:"username" json:"username,omitempty"`
	PasswordFile string   `yaml:"password_file" json:"password_file,omitempty"`
	PasswordEnv  string   `yaml:"password_env" json:"password_env,omitempty"`
	CAFile       string   `yaml:"ca_file" json:"ca_file,omitempty"`

	// Secret is the receiver's secret (URL, webhook URL, routing key or
	// password), from the *_file or *_env above. It prints as <secret>.
	Secret Secret `yaml:"-" json:"secret"`
}

// receiverFields decodes Receiver without recursing into UnmarshalYAML.
type receiverFields Receiver

// secretKeys are receiver keys that would hold a secret inline.
var secretKeys = map[string]string{"url": "url", "webhook_url": "webhook_url", "routing_key": "routing_key", "password": "password"}

// UnmarshalYAML refuses secrets written inline: gantry.yaml is committed
// with the code.
func (r *Receiver) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		keys := allowed("Receiver")
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if s, ok := secretKeys[k.Value]; ok {
				return &Error{Line: val.Line, col: val.Column, Msg: fmt.Sprintf("%s is a secret and gantry.yaml is committed with your code: put it in a file (%s_file: /run/secrets/%s) or an environment variable (%s_env: NAME)", s, s, s, s)}
			}
			if !contains(keys, k.Value) {
				return &Error{Line: val.Line, col: val.Column, Msg: "unknown field in receiver; allowed: " + strings.Join(keys, ", ")}
			}
		}
	}
	return n.Decode((*receiverFields)(r))
}

// Secret is a value read from a file or an environment variable when it is
// needed. It never prints: String, JSON and YAML give <secret>.
type Secret struct {
	File string
	Env  string
}

// Redacted is how a secret prints.
const Redacted = "<secret>"

func (s Secret) String() string { return Redacted }

// MarshalJSON writes <secret>, or null when there is none.
func (s Secret) MarshalJSON() ([]byte, error) {
	if !s.IsSet() {
		return []byte("null"), nil
	}
	return []byte(`"` + Redacted + `"`), nil
}

// MarshalYAML writes <secret>.
func (s Secret) MarshalYAML() (any, error) { return Redacted, nil }

// IsSet reports whether the secret has a source.
func (s Secret) IsSet() bool { return s.File != "" || s.Env != "" }

// Value reads the secret; an error names the file or variable, never the
// value.
func (s Secret) Value() (string, error) {
	switch {
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("secret file %s: %w", s.File, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("secret file %s is empty", s.File)
		}
		return v, nil
	case s.Env != "":
		v := strings.TrimSpace(os.Getenv(s.Env))
		if v == "" {
			return "", fmt.Errorf("environment variable %s (the secret) is empty or not set", s.Env)
		}
		return v, nil
	}
	return "", fmt.Errorf("no secret configured")
}

func (v *validator) notify(n *Notify) {
	at := func(p ...string) []string { return append([]string{"notify"}, p...) }
	if n.Alertmanager != "" {
		u, err := url.Parse(n.Alertmanager)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.fail(fmt.Sprintf("%q is not an Alertmanager URL; write it like http://127.0.0.1:9093", n.Alertmanager), at("alertmanager")...)
		} else if u.User != nil {
			v.fail("put no credentials in the Alertmanager URL; gantry.yaml is committed with your code", at("alertmanager")...)
		}
		if len(n.Routes) > 0 {
			v.fail("with notify.alertmanager, Alertmanager routes the alerts: move the routes to its route tree (alertmanager.yml), or remove alertmanager to use gantry's own", at("routes")...)
		}
	}
	if n.Resend == 0 {
		n.Resend = Duration(DefaultResend)
	}
	if n.Timeout == 0 {
		n.Timeout = Duration(DefaultNotifyTimeout)
	}
	if n.Retry.Initial == 0 {
		n.Retry.Initial = Duration(DefaultRetryInitial)
	}
	if n.Retry.Max == 0 {
		n.Retry.Max = Duration(DefaultRetryMax)
	}
	if n.Retry.Max < n.Retry.Initial {
		v.fail(fmt.Sprintf("retry.max (%s) is shorter than retry.initial (%s)", n.Retry.Max.D(), n.Retry.Initial.D()), at("retry", "max")...)
	}
	if n.Retry.Attempts == 0 && lineOf(v.root, at("retry", "attempts")...) == 0 {
		n.Retry.Attempts = DefaultRetryAttempts
	}
	if n.Retry.Attempts < 1 || n.Retry.Attempts > 20 {
		v.fail("must be between 1 and 20", at("retry", "attempts")...)
	}
	for _, name := range sortedKeys(n.Receivers) {
		r := n.Receivers[name]
		if r == nil {
			r = &Receiver{}
			n.Receivers[name] = r
		}
		r.Name = name
		v.receiver(r)
	}
	for i := range n.Routes {
		r := &n.Routes[i]
		rat := func(p ...string) []string { return at(append([]string{"routes", fmt.Sprint(i)}, p...)...) }
		if r.Severity != "" && !contains(Severities, r.Severity) {
			v.fail(fmt.Sprintf("%q is not a severity; use critical, warning or info (or leave it out to match any)", r.Severity), rat("severity")...)
		}
		if len(r.To) == 0 {
			v.fail("a route sends to at least one receiver, like `to: [slack]`", rat()...)
		}
		for j, to := range r.To {
			if _, ok := n.Receivers[to]; !ok {
				v.fail(fmt.Sprintf("no receiver %q; define it under notify.receivers (known: %s)", to, strings.Join(sortedKeys(n.Receivers), ", ")), rat("to", fmt.Sprint(j))...)
			}
		}
		for j, to := range r.EscalateTo {
			if _, ok := n.Receivers[to]; !ok {
				v.fail(fmt.Sprintf("no receiver %q; define it under notify.receivers (known: %s)", to, strings.Join(sortedKeys(n.Receivers), ", ")), rat("escalate_to", fmt.Sprint(j))...)
			}
		}
		if (r.EscalateAfter > 0) != (len(r.EscalateTo) > 0) {
			v.fail("escalation needs both escalate_after (how long unacknowledged) and escalate_to (whom to tell then)", rat()...)
		}
		if r.Repeat == 0 {
			r.Repeat = Duration(DefaultRepeat)
		}
	}
}

func (v *validator) receiver(r *Receiver) {
	at := func(p ...string) []string { return append([]string{"notify", "receivers", r.Name}, p...) }
	if r.Type == "" && contains(receiverTypes, r.Name) {
		r.Type = r.Name
	}
	if r.Type == "" {
		v.fail(fmt.Sprintf("say what kind of receiver %s is: type: webhook, slack, pagerduty or email", r.Name), at()...)
		return
	}
	if !contains(receiverTypes, r.Type) {
		v.fail(fmt.Sprintf("%q is not a receiver type; use webhook, slack, pagerduty or email (type: may be left out when the receiver is named after it)", r.Type), at("type")...)
		return
	}
	secret := func(file, env, key string) {
		switch {
		case file != "" && env != "":
			v.fail(fmt.Sprintf("give %s_file or %s_env, not both", key, key), at(key+"_file")...)
		case file == "" && env == "":
			v.fail(fmt.Sprintf("a %s receiver needs its %s: %s_file: /run/secrets/NAME or %s_env: NAME", r.Type, key, key, key), at()...)
		}
		r.Secret = Secret{File: v.abs(file), Env: env}
	}
	only := func(what string, set bool, keys string) {
		if set {
			v.fail(fmt.Sprintf("%s are for %s receivers, and this one is a %s receiver", keys, what, r.Type), at()...)
		}
	}
	switch r.Type {
	case ReceiverWebhook:
		secret(r.URLFile, r.URLEnv, "url")
	case ReceiverSlack:
		secret(r.WebhookURLFile, r.WebhookURLEnv, "webhook_url")
	case ReceiverPagerDuty:
		secret(r.RoutingKeyFile, r.RoutingKeyEnv, "routing_key")
		if r.EventsURL == "" {
			r.EventsURL = DefaultPagerDutyURL
		}
		if u, err := url.Parse(r.EventsURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.fail(fmt.Sprintf("%q is not a URL", r.EventsURL), at("events_url")...)
		}
	case ReceiverEmail:
		if len(r.To) == 0 {
			v.fail("an email receiver needs addresses, like `to: [oncall@example.com]`", at("to")...)
		}
		for i, a := range r.To {
			if _, err := mail.ParseAddress(a); err != nil {
				v.fail(fmt.Sprintf("%q is not an email address", a), at("to", fmt.Sprint(i))...)
			}
		}
		if _, err := mail.ParseAddress(r.From); err != nil {
			v.fail(fmt.Sprintf("%q is not an email address; write the sender, like gantry@example.com", r.From), at("from")...)
		}
		if h, p, ok := strings.Cut(r.Smarthost, ":"); !ok || h == "" || p == "" {
			v.fail(fmt.Sprintf("%q is not host:port; write the mail relay, like smtp.example.com:587", r.Smarthost), at("smarthost")...)
		}
		if r.Username != "" || r.PasswordFile != "" || r.PasswordEnv != "" {
			secret(r.PasswordFile, r.PasswordEnv, "password")
			if r.Username == "" {
				v.fail("a password needs a username", at("username")...)
			}
		}
	}
	r.CAFile = v.abs(r.CAFile)
	only("email", r.Type != ReceiverEmail && (len(r.To) > 0 || r.From != "" || r.Smarthost != "" || r.Username != "" || r.PasswordFile != "" || r.PasswordEnv != "" || r.CAFile != ""), "to, from, smarthost, username, password_* and ca_file")
	only("slack", r.Type != ReceiverSlack && (r.Channel != "" || r.WebhookURLFile != "" || r.WebhookURLEnv != ""), "channel and webhook_url_*")
	only("pagerduty", r.Type != ReceiverPagerDuty && (r.EventsURL != "" || r.RoutingKeyFile != "" || r.RoutingKeyEnv != ""), "events_url and routing_key_*")
	only("webhook", r.Type != ReceiverWebhook && (r.URLFile != "" || r.URLEnv != ""), "url_*")
}

// abs makes a path relative to gantry.yaml's directory absolute.
func (v *validator) abs(p string) string {
	if p == "" || filepath.IsAbs(p) || v.dir == "" {
		return p
	}
	return filepath.Join(v.dir, p)
}
