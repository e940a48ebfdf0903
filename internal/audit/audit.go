// Package audit is gantry's append-only audit log: every state-changing
// request, login failure and denied request becomes an event whose hash
// covers the previous event's hash, kept in the same store as the
// deployments. Verify walks the chain and names the first event that was
// edited, deleted or moved; Prune cuts old events and leaves a checkpoint
// (the last cut event's hash) from which what remains still verifies.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/store"
)

// Outcome is how the audited action ended.
type Outcome string

// The outcomes of an audited action.
const (
	OK          Outcome = "ok"
	Denied      Outcome = "denied"
	Failed      Outcome = "failed"
	LoginFailed Outcome = "login_failed"
)

// Valid says whether o is one of the outcomes.
func (o Outcome) Valid() bool {
	switch o {
	case OK, Denied, Failed, LoginFailed:
		return true
	}
	return false
}

// Event is one audited action.
type Event struct {
	ID int64 `json:"id"`
	// Time is set by Append (UTC, nanoseconds).
	Time      time.Time         `json:"time"`
	Actor     string            `json:"actor"`
	Role      string            `json:"role"`
	Action    string            `json:"action"`
	Object    string            `json:"object"`
	Outcome   Outcome           `json:"outcome"`
	RequestID string            `json:"request_id,omitempty"`
	Client    string            `json:"client,omitempty"`
	Detail    map[string]string `json:"detail,omitempty"`
	PrevHash  string            `json:"prev_hash"`
	Hash      string            `json:"hash"`
}

// timeLayout is fixed-width, so stored times sort as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// Log is the audit log over a store. It is safe for concurrent use, and
// several processes (a server and local commands) may append to one store.
type Log struct {
	st  *store.Store
	mu  sync.Mutex
	now func() time.Time
}

// Open returns the audit log kept in st.
func Open(st *store.Store) *Log {
	return &Log{st: st, now: time.Now}
}

// Append records ev at the head of the chain and returns it with its id,
// time and hashes. Detail values that look like secrets are redacted.
func (l *Log) Append(ctx context.Context, ev Event) (Event, error) {
	if ev.Action == "" {
		return Event{}, errors.New("audit event without an action")
	}
	if ev.Outcome == "" {
		ev.Outcome = OK
	}
	if !ev.Outcome.Valid() {
		return Event{}, fmt.Errorf("audit event outcome %q: want ok, denied, failed or login_failed", ev.Outcome)
	}
	ev.Detail = Redact(ev.Detail)
	l.mu.Lock()
	defer l.mu.Unlock()
	// A hard deadline: an audit write that waits on a busy database must
	// not hold a request forever, but must not be cut by a client going away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, err := l.st.AppendAudit(ctx, func(id int64, prev string) (store.AuditRow, error) {
		ev.ID, ev.PrevHash = id, prev
		ev.Time = l.now().UTC()
		// The stored time has nanosecond precision; round-trip it so the
		// returned event hashes as the stored one does.
		ev.Time, _ = time.Parse(timeLayout, ev.Time.Format(timeLayout))
		h, err := ev.computeHash()
		if err != nil {
			return store.AuditRow{}, err
		}
		ev.Hash = h
		return toRow(ev)
	})
	if err != nil {
		return Event{}, fmt.Errorf("audit log: %w", err)
	}
	return ev, nil
}

// AppendMany records evs in order, in one transaction (an import, or a
// store filled for a benchmark). Times are the events' own when set.
func (l *Log) AppendMany(ctx context.Context, evs []Event) error {
	for _, ev := range evs {
		if ev.Action == "" || (ev.Outcome != "" && !ev.Outcome.Valid()) {
			return fmt.Errorf("audit event %+v: an action and a valid outcome are required", ev)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	i := 0
	err := l.st.AppendAuditBatch(ctx, len(evs), func(id int64, prev string) (store.AuditRow, error) {
		ev := evs[i]
		i++
		if ev.Outcome == "" {
			ev.Outcome = OK
		}
		ev.Detail = Redact(ev.Detail)
		ev.ID, ev.PrevHash = id, prev
		if ev.Time.IsZero() {
			ev.Time = l.now()
		}
		ev.Time, _ = time.Parse(timeLayout, ev.Time.UTC().Format(timeLayout))
		h, err := ev.computeHash()
		if err != nil {
			return store.AuditRow{}, err
		}
		ev.Hash = h
		return toRow(ev)
	})
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

// canonical is the hashed encoding of an event: fixed field order, the
// detail's keys sorted (encoding/json sorts map keys), no hashes.
type canonical struct {
	ID        int64             `json:"id"`
	Time      string            `json:"time"`
	Actor     string            `json:"actor"`
	Role      string            `json:"role"`
	Action    string            `json:"action"`
	Object    string            `json:"object"`
	Outcome   Outcome           `json:"outcome"`
	RequestID string            `json:"request_id"`
	Client    string            `json:"client"`
	Detail    map[string]string `json:"detail"`
}

// computeHash is sha256(prev_hash "\n" canonical JSON), hex.
func (ev Event) computeHash() (string, error) {
	d := ev.Detail
	if d == nil {
		d = map[string]string{}
	}
	b, err := json.Marshal(canonical{ev.ID, ev.Time.UTC().Format(timeLayout), ev.Actor, ev.Role, ev.Action, ev.Object, ev.Outcome, ev.RequestID, ev.Client, d})
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte(ev.PrevHash))
	h.Write([]byte{'\n'})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func toRow(ev Event) (store.AuditRow, error) {
	d := ev.Detail
	if d == nil {
		d = map[string]string{}
	}
	b, err := json.Marshal(d)
	if err != nil {
		return store.AuditRow{}, err
	}
	return store.AuditRow{ID: ev.ID, At: ev.Time.UTC().Format(timeLayout), Actor: ev.Actor, Role: ev.Role, Action: ev.Action,
		Object: ev.Object, Outcome: string(ev.Outcome), RequestID: ev.RequestID, Client: ev.Client, Detail: string(b),
		PrevHash: ev.PrevHash, Hash: ev.Hash}, nil
}

// fromRow decodes a stored row. A row that does not decode is returned with
// what could be read and the error, so Verify can name it.
func fromRow(r store.AuditRow) (Event, error) {
	ev := Event{ID: r.ID, Actor: r.Actor, Role: r.Role, Action: r.Action, Object: r.Object, Outcome: Outcome(r.Outcome),
		RequestID: r.RequestID, Client: r.Client, PrevHash: r.PrevHash, Hash: r.Hash}
	t, err := time.Parse(timeLayout, r.At)
	if err != nil {
		return ev, fmt.Errorf("time %q: %w", r.At, err)
	}
	ev.Time = t
	if err := json.Unmarshal([]byte(r.Detail), &ev.Detail); err != nil {
		return ev, fmt.Errorf("detail: %w", err)
	}
	if len(ev.Detail) == 0 {
		ev.Detail = nil
	}
	return ev, nil
}

// secretKey matches detail keys whose values must never be recorded.
var secretKey = regexp.MustCompile(`(?i)(secret|password|passwd|token_value|credential|private)`)

// tokenLike matches gantry API tokens (gnt_<id>_<secret>) anywhere in a value.
var tokenLike = regexp.MustCompile(`gnt_[A-Za-z0-9]+_[A-Za-z0-9_-]{16,}`)

// Redact returns d with the values of secret-looking keys replaced by
// <secret> and any gantry token inside a value cut out.
func Redact(d map[string]string) map[string]string {
	if len(d) == 0 {
		return nil
	}
	out := make(map[string]string, len(d))
	for k, v := range d {
		switch {
		case secretKey.MatchString(k):
			v = "<secret>"
		case strings.Contains(v, "gnt_"):
			v = tokenLike.ReplaceAllString(v, "<secret>")
		}
		out[k] = v
	}
	return out
}

// Filter selects events for List; zero fields do not filter. Action
// matches exactly or as the part before a dot ("token" lists
// "token.create" and "token.revoke").
type Filter struct {
	Actor   string
	Action  string
	Object  string
	Outcome Outcome
	Since   time.Time
	Until   time.Time
	// BeforeID pages backwards from an event id.
	BeforeID int64
	// Limit bounds the count; 0 means DefaultLimit, negative means all.
	Limit int
}

// DefaultLimit is how many events List returns when Filter.Limit is 0.
const DefaultLimit = 100

func (f Filter) query() store.AuditQuery {
	q := store.AuditQuery{Actor: f.Actor, Action: f.Action, Object: f.Object, Outcome: string(f.Outcome), BeforeID: f.BeforeID, Limit: f.Limit}
	if f.Limit == 0 {
		q.Limit = DefaultLimit
	}
	if !f.Since.IsZero() {
		q.Since = f.Since.UTC().Format(timeLayout)
	}
	if !f.Until.IsZero() {
		q.Until = f.Until.UTC().Format(timeLayout)
	}
	return q
}

// List returns the events matching f, newest first.
func (l *Log) List(ctx context.Context, f Filter) ([]Event, error) {
	rows, err := l.st.AuditEvents(ctx, f.query())
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	out := make([]Event, 0, len(rows))
	for _, r := range rows {
		ev, err := fromRow(r)
		if err != nil {
			return nil, fmt.Errorf("audit event %d: %w", r.ID, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// Record is an event as stored, its detail left as the JSON it is stored
// as: it encodes as an Event does, for a server that passes events on
// without looking into them (decoding and encoding every detail was a
// third of a list request's time).
type Record struct {
	ID        int64           `json:"id"`
	Time      time.Time       `json:"time"`
	Actor     string          `json:"actor"`
	Role      string          `json:"role"`
	Action    string          `json:"action"`
	Object    string          `json:"object"`
	Outcome   Outcome         `json:"outcome"`
	RequestID string          `json:"request_id,omitempty"`
	Client    string          `json:"client,omitempty"`
	Detail    json.RawMessage `json:"detail,omitempty"`
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
}

// ListRecords is List, with each detail as stored.
func (l *Log) ListRecords(ctx context.Context, f Filter) ([]Record, error) {
	rows, err := l.st.AuditEvents(ctx, f.query())
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	out := make([]Record, 0, len(rows))
	for _, r := range rows {
		t, err := time.Parse(timeLayout, r.At)
		if err != nil {
			return nil, fmt.Errorf("audit event %d: time %q: %w", r.ID, r.At, err)
		}
		rec := Record{ID: r.ID, Time: t, Actor: r.Actor, Role: r.Role, Action: r.Action, Object: r.Object, Outcome: Outcome(r.Outcome),
			RequestID: r.RequestID, Client: r.Client, PrevHash: r.PrevHash, Hash: r.Hash}
		if r.Detail != "{}" && r.Detail != "" {
			rec.Detail = json.RawMessage(r.Detail)
		}
		out = append(out, rec)
	}
	return out, nil
}

// Problem is the first event where the chain breaks.
type Problem struct {
	// ID is the event that fails (or, for a missing last event, the head's).
	ID     int64  `json:"id"`
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}

// The kinds of problem Verify finds.
const (
	ProblemEdited    = "edited"
	ProblemMissing   = "missing"
	ProblemRewritten = "rewritten"
	ProblemBadChain  = "chain"
)

func (p *Problem) Error() string {
	return fmt.Sprintf("audit event %d: %s: %s", p.ID, p.Kind, p.Reason)
}

// Report is what Verify checked.
type Report struct {
	Events int64 `json:"events"`
	// FirstID and LastID bound the events checked.
	FirstID int64 `json:"first_id,omitempty"`
	LastID  int64 `json:"last_id,omitempty"`
	// Checkpoint is where the chain starts after a prune: the id of the last
	// event cut and how many were cut.
	CheckpointID int64    `json:"checkpoint_id,omitempty"`
	Pruned       int64    `json:"pruned,omitempty"`
	HeadHash     string   `json:"head_hash,omitempty"`
	Problem      *Problem `json:"problem,omitempty"`
}

// Verify walks the whole chain from its checkpoint and returns a report
// whose Problem names the first event that was edited (its hash does not
// match its content), deleted (an id is missing, or the head names an event
// that is gone), or moved (its previous hash is not the hash of the event
// before it). The error is for failing to read the store only.
func (l *Log) Verify(ctx context.Context) (*Report, error) {
	rep := &Report{}
	err := l.st.VerifyAudit(ctx, func(c store.AuditChain, scan func(func(store.AuditRow) error) error) error {
		rep.CheckpointID, rep.Pruned, rep.HeadHash = c.CheckpointID, c.Pruned, c.HeadHash
		wantID, prev := c.CheckpointID+1, c.CheckpointHash
		stop := errors.New("stop")
		err := scan(func(r store.AuditRow) error {
			p := checkRow(r, wantID, prev)
			if p != nil {
				rep.Problem = p
				return stop
			}
			if rep.FirstID == 0 {
				rep.FirstID = r.ID
			}
			rep.LastID = r.ID
			rep.Events++
			wantID, prev = r.ID+1, r.Hash
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			return err
		}
		if rep.Problem != nil {
			return nil
		}
		switch {
		case c.HeadID != wantID-1:
			rep.Problem = &Problem{ID: wantID, Kind: ProblemMissing, Reason: fmt.Sprintf("the log's head is event %d, but the last event stored is %d: events %d to %d were deleted", c.HeadID, wantID-1, wantID, c.HeadID)}
		case c.HeadHash != prev:
			rep.Problem = &Problem{ID: c.HeadID, Kind: ProblemEdited, Reason: "the last event's hash is not the one recorded as the log's head"}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return rep, nil
}

func checkRow(r store.AuditRow, wantID int64, prev string) *Problem {
	if r.ID != wantID {
		if r.ID < wantID {
			return &Problem{ID: r.ID, Kind: ProblemBadChain, Reason: fmt.Sprintf("event %d comes at or before the checkpoint (event %d)", r.ID, wantID-1)}
		}
		return &Problem{ID: wantID, Kind: ProblemMissing, Reason: fmt.Sprintf("event %d is missing (deleted): the next event stored is %d", wantID, r.ID)}
	}
	ev, err := fromRow(r)
	if err != nil {
		return &Problem{ID: r.ID, Kind: ProblemEdited, Reason: err.Error()}
	}
	h, err := ev.computeHash()
	if err != nil {
		return &Problem{ID: r.ID, Kind: ProblemEdited, Reason: err.Error()}
	}
	if r.PrevHash != prev {
		// The event itself is intact but the one before is not the one it
		// followed when it was written: that one was rewritten with a fresh
		// hash (or the checkpoint was changed). An id is part of the hash,
		// so a moved event shows as edited at its new place.
		if h == r.Hash {
			return &Problem{ID: r.ID - 1, Kind: ProblemRewritten, Reason: fmt.Sprintf("event %d is intact but was written after another event %d (or checkpoint) than the one stored now: event %d was changed and re-hashed, or replaced", r.ID, r.ID-1, r.ID-1)}
		}
		return &Problem{ID: r.ID, Kind: ProblemEdited, Reason: "its content and its previous hash do not match the chain"}
	}
	if h != r.Hash {
		return &Problem{ID: r.ID, Kind: ProblemEdited, Reason: "its content does not match its hash: it was changed after it was written"}
	}
	return nil
}

// Export writes the events since (all when zero), oldest first, as JSON
// lines, and returns how many it wrote. Each line is an Event; the chain
// can be checked from the lines alone (prev_hash, hash).
func (l *Log) Export(ctx context.Context, w io.Writer, since time.Time) (int64, error) {
	var q string
	if !since.IsZero() {
		q = since.UTC().Format(timeLayout)
	}
	enc := json.NewEncoder(w)
	var n int64
	err := l.st.ScanAudit(ctx, q, func(r store.AuditRow) error {
		ev, err := fromRow(r)
		if err != nil {
			return fmt.Errorf("audit event %d: %w", r.ID, err)
		}
		n++
		return enc.Encode(ev)
	})
	return n, err
}

// Checkpoint is where the remaining chain starts after a prune.
type Checkpoint struct {
	// ID and Hash are the last event cut.
	ID   int64     `json:"id"`
	Hash string    `json:"hash"`
	Time time.Time `json:"time"`
	// Pruned is how many events were cut in all.
	Pruned int64 `json:"pruned"`
}

// Prune cuts the events older than before and records the checkpoint from
// which the remaining chain verifies. It returns how many events it cut.
func (l *Log) Prune(ctx context.Context, before time.Time) (int64, Checkpoint, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, c, err := l.st.PruneAudit(ctx, before.UTC().Format(timeLayout))
	if err != nil {
		return 0, Checkpoint{}, fmt.Errorf("audit log: %w", err)
	}
	cp := Checkpoint{ID: c.CheckpointID, Hash: c.CheckpointHash, Pruned: c.Pruned}
	cp.Time, _ = time.Parse(timeLayout, c.CheckpointAt)
	return n, cp, nil
}

// ParseWhen reads a point in time for filters: an age before now (7d, 24h,
// 30m) or a time (RFC 3339, "2006-01-02 15:04:05", or a date, in UTC).
// Empty is the zero time: no bound.
func ParseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	d, err := auth.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: write an age like 24h or 7d, or a time like 2026-01-02 or 2026-01-02T15:04:05Z", s)
	}
	return now.Add(-d), nil
}
