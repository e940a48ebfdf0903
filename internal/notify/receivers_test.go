package notify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// receiver is an HTTP endpoint run by the test that records what it gets,
// failing the first failFirst requests with status failWith.
type receiver struct {
	srv       *httptest.Server
	mu        sync.Mutex
	bodies    []map[string]any
	failFirst int
	failWith  int
	calls     atomic.Int32
}

func newTestReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n := int(r.calls.Add(1))
		if n <= r.failFirst {
			http.Error(w, "try later", r.failWith)
			return
		}
		var body any
		b, _ := io.ReadAll(req.Body)
		json.Unmarshal(b, &body)
		r.mu.Lock()
		switch v := body.(type) {
		case map[string]any:
			r.bodies = append(r.bodies, v)
		case []any:
			for _, x := range v {
				r.bodies = append(r.bodies, x.(map[string]any))
			}
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.bodies...)
}

// waitGot waits until the receiver got n bodies.
func (r *receiver) waitGot(t *testing.T, n int, what string) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if g := r.got(); len(g) >= n {
			return g
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: got %d messages, want %d: %v", what, len(r.got()), n, r.got())
	return nil
}

// secretFile writes a secret to a file in dir and returns its path.
func secretFile(t *testing.T, dir, name, value string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// loadNotify writes a gantry.yaml with notify section yaml and loads it,
// so the test goes through the same validation as a user's file.
func loadNotify(t *testing.T, section string) *config.Notify {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "gantry.yaml")
	os.WriteFile(p, []byte("project: shop\nenvironments:\n  staging: {}\nnotify:\n"+section), 0o644)
	f, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return &f.Notify
}

// smtpServer is a go-smtp server on loopback that offers STARTTLS with a
// self-signed certificate and PLAIN authentication, and keeps the mails.
type smtpServer struct {
	addr   string
	caFile string
	mu     sync.Mutex
	mails  []string
	auths  []string
}

type smtpSession struct{ s *smtpServer }

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		s.s.mu.Lock()
		s.s.auths = append(s.s.auths, user+":"+pass)
		s.s.mu.Unlock()
		if pass != "smtp-pa55" {
			return errors.New("bad password")
		}
		return nil
	}), nil
}
func (s *smtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *smtpSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.s.mu.Lock()
	s.s.mails = append(s.s.mails, string(b))
	s.s.mu.Unlock()
	return err
}
func (s *smtpSession) Reset()        {}
func (s *smtpSession) Logout() error { return nil }

func startSMTP(t *testing.T) *smtpServer {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gantry test relay"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kb, _ := x509.MarshalECPrivateKey(key)
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{caFile: filepath.Join(t.TempDir(), "ca.pem")}
	os.WriteFile(s.caFile, certPEM, 0o644)
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{s}, nil }))
	srv.Domain = "127.0.0.1"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *smtpServer) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.mails...)
}

const (
	slackToken = "T000/B000/slack-secret-9f3a"
	pdKey      = "pd-routing-key-77c1"
	smtpPass   = "smtp-pa55"
)

// TestBuiltinReceiversRouteBySeverity: without Alertmanager, critical goes
// to PagerDuty and Slack, warning to Slack, info to email over STARTTLS;
// resolving sends a PagerDuty resolve; the secrets reach the receivers and
// nothing else.
func TestBuiltinReceiversRouteBySeverity(t *testing.T) {
	slack, pd, relay := newTestReceiver(t), newTestReceiver(t), startSMTP(t)
	dir := t.TempDir()
	cfg := loadNotify(t, fmt.Sprintf(`  routes:
    - { severity: critical, to: [pagerduty, slack] }
    - { severity: warning, to: [slack] }
    - { severity: info, to: [mail] }
  receivers:
    slack: { webhook_url_file: %s }
    pagerduty: { routing_key_file: %s, events_url: %s }
    mail: { type: email, to: [oncall@example.com], from: gantry@example.com, smarthost: '%s', username: gantry, password_file: %s, ca_file: %s }
`, secretFile(t, dir, "slack", slack.srv.URL+"/services/"+slackToken), secretFile(t, dir, "pd", pdKey), pd.srv.URL+"/v2/enqueue",
		relay.addr, secretFile(t, dir, "smtp", smtpPass), relay.caFile))
	st := openStore(t)
	m, err := New(cfg, st, "shop")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	crit, err := m.Fire(ctx, m.alert(AnalysisFailed, "staging", "web", "2.0.0", 7, "the analysis of 2.0.0 failed", "query: up"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Fire(ctx, m.alert(RolledBack, "staging", "", "2.0.0", 7, "2.0.0 rolled back", "")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Fire(ctx, m.alert(ApprovalWaiting, "production", "", "2.0.0", 8, "deployment 8 waits", "")); err != nil {
		t.Fatal(err)
	}
	if err := m.Resolve(ctx, crit.Fingerprint); err != nil {
		t.Fatal(err)
	}

	pds := pd.got()
	if len(pds) != 2 || pds[0]["event_action"] != "trigger" || pds[1]["event_action"] != "resolve" || pds[0]["routing_key"] != pdKey || pds[0]["dedup_key"] != pds[1]["dedup_key"] {
		t.Errorf("PagerDuty got %v", pds)
	}
	if p, _ := pds[0]["payload"].(map[string]any); p["severity"] != "critical" || p["component"] != "web" || p["group"] != "staging" {
		t.Errorf("PagerDuty payload %v", p)
	}
	sl := slack.got()
	if len(sl) != 3 || !strings.Contains(sl[0]["text"].(string), "[FIRING:critical] GantryAnalysisFailed shop/staging/web release 2.0.0") ||
		!strings.Contains(sl[1]["text"].(string), "[FIRING:warning] GantryRolledBack") || !strings.Contains(sl[2]["text"].(string), "[RESOLVED:critical]") {
		t.Errorf("Slack got %v", sl)
	}
	mails := relay.got()
	if len(mails) != 1 || !strings.Contains(mails[0], "Subject: [FIRING:info] GantryApprovalWaiting shop/production") || !strings.Contains(mails[0], "To: oncall@example.com") {
		t.Errorf("mail: %q", mails)
	}
	if len(relay.auths) != 1 || relay.auths[0] != "gantry:"+smtpPass {
		t.Errorf("SMTP auth: %v", relay.auths)
	}
	assertNoSecrets(t, st, slackToken, pdKey, smtpPass)
}

// assertNoSecrets checks the store's alerts and deliveries for secrets.
func assertNoSecrets(t *testing.T, st *store.Store, secrets ...string) {
	t.Helper()
	as, _ := st.Alerts(context.Background(), true, 0)
	for _, a := range as {
		ds, _ := st.Deliveries(context.Background(), a.ID)
		b, _ := json.Marshal(map[string]any{"alert": a, "deliveries": ds})
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("the store holds a secret: %s", b)
			}
		}
	}
}

// TestRetryBackoffAndRedaction: a 503 is retried with backoff until it
// passes, a 400 is not, an unreachable webhook fails after its attempts,
// and no error or record shows the webhook's URL.
func TestRetryBackoffAndRedaction(t *testing.T) {
	flaky, bad := newTestReceiver(t), newTestReceiver(t)
	flaky.failFirst, flaky.failWith = 2, http.StatusServiceUnavailable
	bad.failFirst, bad.failWith = 100, http.StatusBadRequest
	dir := t.TempDir()
	const token = "hook-secret-1c2d"
	gone := fmt.Sprintf("http://127.0.0.1:%d/hooks/%s", testenv.FreePort(t), token)
	cfg := loadNotify(t, fmt.Sprintf(`  retry: { initial: 50ms, max: 200ms, attempts: 4 }
  routes:
    - { severity: critical, to: [flaky] }
    - { severity: warning, to: [bad] }
    - { severity: info, to: [gone] }
  receivers:
    flaky: { type: webhook, url_file: %s }
    bad: { type: webhook, url_file: %s }
    gone: { type: webhook, url_file: %s }
`, secretFile(t, dir, "flaky", flaky.srv.URL+"/hooks/"+token), secretFile(t, dir, "bad", bad.srv.URL+"/hooks/"+token), secretFile(t, dir, "gone", gone)))
	st := openStore(t)
	m, err := New(cfg, st, "shop")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	a, err := m.Fire(ctx, m.alert(DeploymentFailed, "staging", "", "2.0.0", 1, "failed", ""))
	if err != nil {
		t.Fatalf("the flaky webhook should pass on its third attempt: %v", err)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("two retries took %s; the backoff is 50ms then 100ms", took)
	}
	ds, _ := st.Deliveries(ctx, a.ID)
	if len(ds) != 3 || ds[0].OK || ds[1].OK || !ds[2].OK || ds[2].Attempt != 3 || !strings.Contains(ds[0].Error, "503") {
		t.Errorf("deliveries: %+v", ds)
	}
	if got := flaky.got(); len(got) != 1 || got[0]["status"] != "firing" || got[0]["alert"].(map[string]any)["name"] != DeploymentFailed {
		t.Errorf("webhook got %v", got)
	}

	w, err := m.Fire(ctx, m.alert(RolledBack, "staging", "", "2.0.0", 1, "rolled back", ""))
	if err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("a 400 must fail at once: %v", err)
	}
	if ds, _ := st.Deliveries(ctx, w.ID); len(ds) != 1 {
		t.Errorf("a 400 was tried %d times", len(ds))
	}
	g, err := m.Fire(ctx, m.alert(ApprovalWaiting, "production", "", "", 2, "waits", ""))
	if err == nil {
		t.Fatal("an unreachable webhook succeeded")
	}
	if ds, _ := st.Deliveries(ctx, g.ID); len(ds) != 4 {
		t.Errorf("an unreachable webhook was tried %d times, want 4", len(ds))
	}
	for _, e := range []error{err} {
		if strings.Contains(e.Error(), token) || !strings.Contains(e.Error(), config.Redacted) {
			t.Errorf("error shows the webhook: %v", e)
		}
	}
	assertNoSecrets(t, st, token)
}

// TestRepeatEscalateAck: a firing alert is sent again every repeat; one
// nobody acknowledged goes to the escalation route after escalate_after;
// an acknowledged one does not.
func TestRepeatEscalateAck(t *testing.T) {
	team, pager := newTestReceiver(t), newTestReceiver(t)
	dir := t.TempDir()
	cfg := loadNotify(t, fmt.Sprintf(`  routes:
    - { severity: critical, to: [team], repeat: 300ms, escalate_after: 200ms, escalate_to: [pager] }
  receivers:
    team: { type: webhook, url_file: %s }
    pager: { type: webhook, url_file: %s }
`, secretFile(t, dir, "team", team.srv.URL), secretFile(t, dir, "pager", pager.srv.URL)))
	st := openStore(t)
	m, err := New(cfg, st, "shop")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	loud, _ := m.Fire(ctx, m.alert(ServiceUnhealthy, "production", "web", "2.0.0", 0, "web unhealthy", ""))
	quiet, _ := m.Fire(ctx, m.alert(ServiceUnhealthy, "production", "api", "2.0.0", 0, "api unhealthy", ""))
	if _, err := m.Ack(ctx, quiet.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(pager.got()); n != 0 {
		t.Fatalf("escalated before escalate_after: %v", pager.got())
	}
	time.Sleep(350 * time.Millisecond)
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	esc := pager.got()
	if len(esc) != 1 || esc[0]["kind"] != KindEscalation || esc[0]["alert"].(map[string]any)["service"] != "web" {
		t.Fatalf("escalation: %v", esc)
	}
	// Both were sent again (repeat), the escalated one to the pager too.
	if got := team.got(); len(got) != 4 || got[2]["kind"] != KindRepeat {
		t.Errorf("team got %d messages, want 2 firing + 2 repeats: %v", len(got), got)
	}
	m.Tick(ctx)
	if len(pager.got()) != 1 {
		t.Errorf("escalated twice, or repeated too early: %v", pager.got())
	}
	if err := m.ServiceHealth(ctx, "production", "web", "2.0.0", true, ""); err != nil {
		t.Fatal(err)
	}
	if got := pager.got(); len(got) != 2 || got[1]["status"] != "resolved" {
		t.Errorf("the escalation receiver was not told of the resolve: %v", got)
	}
	a, _ := st.GetAlert(ctx, loud.ID)
	if a.Firing() || a.EscalatedAt == nil {
		t.Errorf("alert: %+v", a)
	}
	if q, _ := st.GetAlert(ctx, quiet.ID); q.AckedBy != "alice" || q.EscalatedAt != nil {
		t.Errorf("acknowledged alert: %+v", q)
	}
	if _, err := m.Ack(ctx, 999, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ack of a missing alert: %v", err)
	}
}

// TestApprovalAlertsFollowRequests: a promotion waiting for approval raises
// GantryApprovalWaiting (info) on the next tick; once the request is
// settled (here: expired), the next tick resolves it.
func TestApprovalAlertsFollowRequests(t *testing.T) {
	hook := newTestReceiver(t)
	dir := t.TempDir()
	cfg := loadNotify(t, fmt.Sprintf("  routes: [ { severity: info, to: [hook] } ]\n  receivers:\n    hook: { type: webhook, url_file: %s }\n", secretFile(t, dir, "hook", hook.srv.URL)))
	st := openStore(t)
	m, err := New(cfg, st, "shop")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d := &store.Deployment{Project: "shop", Env: "production", Release: "1.4.0", Kind: "deploy"}
	r := &store.ApprovalRequest{From: "staging", RequestedBy: "alice", RequesterRole: "editor", Required: 2, ExpiresAt: time.Now().Add(time.Hour)}
	if err := st.CreateAwaiting(ctx, d, r); err != nil {
		t.Fatal(err)
	}
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	m.Tick(ctx) // the same request raises no second alert
	got := hook.got()
	if len(got) != 1 || got[0]["status"] != "firing" {
		t.Fatalf("got %v", got)
	}
	a := got[0]["alert"].(map[string]any)
	if a["name"] != ApprovalWaiting || a["severity"] != "info" || a["env"] != "production" || a["release"] != "1.4.0" || !strings.Contains(a["summary"].(string), "waits for 2 approval(s)") {
		t.Errorf("alert: %v", a)
	}
	if _, err := st.ExpireApprovals(ctx, "shop", "production", time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := m.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := hook.got(); len(got) != 2 || got[1]["status"] != "resolved" {
		t.Errorf("after the request expired: %v", got)
	}
}
