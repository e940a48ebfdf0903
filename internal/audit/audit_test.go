package audit

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/store"
)

// newLog opens a log in a fresh store and returns the raw database too, for
// tampering the way someone with the file would.
func newLog(t *testing.T) (*Log, *sql.DB) {
	t.Helper()
	return newLogIn(t, t.TempDir())
}

func newLogIn(t *testing.T, dir string) (*Log, *sql.DB) {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, store.FileName)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return Open(st), db
}

func appendN(t *testing.T, l *Log, n int) []Event {
	t.Helper()
	var out []Event
	for i := range n {
		ev, err := l.Append(context.Background(), Event{Actor: fmt.Sprintf("user%d", i%3), Role: "editor", Action: "deploy", Object: "env/staging",
			Outcome: OK, RequestID: fmt.Sprintf("req-%d", i), Client: "127.0.0.1:5000", Detail: map[string]string{"release": fmt.Sprintf("1.0.%d", i)}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func verify(t *testing.T, l *Log) *Report {
	t.Helper()
	rep, err := l.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatal(err)
	}
}

func TestChainVerifies(t *testing.T) {
	l, _ := newLog(t)
	if rep := verify(t, l); rep.Problem != nil || rep.Events != 0 {
		t.Fatalf("empty log: %+v", rep)
	}
	evs := appendN(t, l, 5)
	for i, ev := range evs {
		if ev.ID != int64(i+1) {
			t.Errorf("event %d has id %d", i, ev.ID)
		}
		if i > 0 && ev.PrevHash != evs[i-1].Hash {
			t.Errorf("event %d prev hash %q, want %q", ev.ID, ev.PrevHash, evs[i-1].Hash)
		}
	}
	rep := verify(t, l)
	if rep.Problem != nil || rep.Events != 5 || rep.FirstID != 1 || rep.LastID != 5 || rep.HeadHash != evs[4].Hash {
		t.Fatalf("report %+v", rep)
	}
}

func TestTamperingDetected(t *testing.T) {
	cases := []struct {
		name    string
		tamper  func(t *testing.T, db *sql.DB)
		wantID  int64
		wantKnd string
	}{
		{"edited actor", func(t *testing.T, db *sql.DB) {
			exec(t, db, `UPDATE audit_events SET actor='mallory' WHERE id=3`)
		}, 3, ProblemEdited},
		{"edited outcome", func(t *testing.T, db *sql.DB) {
			exec(t, db, `UPDATE audit_events SET outcome='ok' WHERE id=4 AND outcome='ok'`)
			exec(t, db, `UPDATE audit_events SET outcome='denied' WHERE id=4`)
		}, 4, ProblemEdited},
		{"edited detail", func(t *testing.T, db *sql.DB) {
			exec(t, db, `UPDATE audit_events SET detail='{"release":"9.9.9"}' WHERE id=2`)
		}, 2, ProblemEdited},
		{"edited time", func(t *testing.T, db *sql.DB) {
			exec(t, db, `UPDATE audit_events SET at='2000-01-01T00:00:00.000000000Z' WHERE id=5`)
		}, 5, ProblemEdited},
		{"edited and rehashed", func(t *testing.T, db *sql.DB) {
			// Someone who recomputes the edited event's own hash still breaks
			// the next event's link.
			var prev string
			db.QueryRow(`SELECT prev_hash FROM audit_events WHERE id=3`).Scan(&prev)
			ev := Event{ID: 3, Actor: "mallory", Role: "editor", Action: "deploy", Object: "env/staging", Outcome: OK, PrevHash: prev}
			var at string
			db.QueryRow(`SELECT at, request_id, client FROM audit_events WHERE id=3`).Scan(&at, &ev.RequestID, &ev.Client)
			ev.Time, _ = time.Parse(timeLayout, at)
			ev.Detail = map[string]string{"release": "1.0.2"}
			h, _ := ev.computeHash()
			exec(t, db, `UPDATE audit_events SET actor='mallory', hash=? WHERE id=3`, h)
		}, 3, ProblemRewritten},
		{"deleted in the middle", func(t *testing.T, db *sql.DB) {
			exec(t, db, `DELETE FROM audit_events WHERE id=3`)
		}, 3, ProblemMissing},
		{"deleted first", func(t *testing.T, db *sql.DB) {
			exec(t, db, `DELETE FROM audit_events WHERE id=1`)
		}, 1, ProblemMissing},
		{"deleted last", func(t *testing.T, db *sql.DB) {
			exec(t, db, `DELETE FROM audit_events WHERE id=6`)
		}, 6, ProblemMissing},
		{"deleted and renumbered", func(t *testing.T, db *sql.DB) {
			exec(t, db, `DELETE FROM audit_events WHERE id=3`)
			exec(t, db, `UPDATE audit_events SET id=id-1 WHERE id>3`)
			exec(t, db, `UPDATE audit_chain SET head_id=5`)
		}, 3, ProblemEdited},
		{"swapped", func(t *testing.T, db *sql.DB) {
			// Swap rows 2 and 4 whole, ids included: the order by id changes.
			exec(t, db, `UPDATE audit_events SET id=-2 WHERE id=2`)
			exec(t, db, `UPDATE audit_events SET id=2 WHERE id=4`)
			exec(t, db, `UPDATE audit_events SET id=4 WHERE id=-2`)
		}, 2, ProblemEdited},
		{"swapped contents, ids kept", func(t *testing.T, db *sql.DB) {
			exec(t, db, `CREATE TEMP TABLE t AS SELECT * FROM audit_events WHERE id IN (2,3)`)
			exec(t, db, `DELETE FROM audit_events WHERE id IN (2,3)`)
			exec(t, db, `INSERT INTO audit_events SELECT CASE id WHEN 2 THEN 3 ELSE 2 END, at, actor, role, action, object, outcome, request_id, client, detail, prev_hash, hash FROM t`)
		}, 2, ProblemEdited},
		{"moved with hashes", func(t *testing.T, db *sql.DB) {
			// An event moved elsewhere keeps a self-consistent hash only if
			// its id is unchanged; the id is hashed, so any move shows.
			exec(t, db, `UPDATE audit_events SET prev_hash=(SELECT hash FROM audit_events WHERE id=1) WHERE id=3`)
		}, 3, ProblemEdited},
		{"inserted", func(t *testing.T, db *sql.DB) {
			exec(t, db, `INSERT INTO audit_events SELECT 7, at, actor, role, action, object, outcome, request_id, client, detail, prev_hash, hash FROM audit_events WHERE id=6`)
		}, 7, ProblemEdited},
		{"head edited", func(t *testing.T, db *sql.DB) {
			exec(t, db, `UPDATE audit_chain SET head_hash='00'`)
		}, 6, ProblemEdited},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, db := newLog(t)
			appendN(t, l, 6)
			if p := verify(t, l).Problem; p != nil {
				t.Fatalf("before tampering: %v", p)
			}
			tc.tamper(t, db)
			p := verify(t, l).Problem
			if p == nil {
				t.Fatal("tampering not detected")
			}
			if p.ID != tc.wantID || p.Kind != tc.wantKnd {
				t.Errorf("problem %v; want event %d %s", p, tc.wantID, tc.wantKnd)
			}
		})
	}
}

func TestPruneKeepsVerifying(t *testing.T) {
	l, db := newLog(t)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { clock = clock.Add(time.Hour); return clock }
	evs := appendN(t, l, 10)
	cut, cp, err := l.Prune(context.Background(), evs[4].Time) // events 1-4 are older
	if err != nil {
		t.Fatal(err)
	}
	if cut != 4 || cp.ID != 4 || cp.Hash != evs[3].Hash || cp.Pruned != 4 || !cp.Time.Equal(evs[3].Time) {
		t.Fatalf("cut %d, checkpoint %+v", cut, cp)
	}
	rep := verify(t, l)
	if rep.Problem != nil || rep.Events != 6 || rep.FirstID != 5 || rep.CheckpointID != 4 || rep.Pruned != 4 {
		t.Fatalf("after prune: %+v", rep)
	}
	// Appending after a prune continues the chain.
	appendN(t, l, 2)
	if cut, _, _ := l.Prune(context.Background(), evs[7].Time); cut != 3 {
		t.Fatalf("second prune cut %d, want 3", cut)
	}
	rep = verify(t, l)
	if rep.Problem != nil || rep.Events != 5 || rep.Pruned != 7 {
		t.Fatalf("after second prune: %+v", rep)
	}
	// Pruning nothing changes nothing.
	if cut, _, _ := l.Prune(context.Background(), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)); cut != 0 {
		t.Fatalf("pruned %d events older than 2000", cut)
	}
	// Deleting the first remaining event is still caught after a prune.
	exec(t, db, `DELETE FROM audit_events WHERE id=8`)
	if p := verify(t, l).Problem; p == nil || p.ID != 8 || p.Kind != ProblemMissing {
		t.Fatalf("deleted first event after checkpoint: %v", p)
	}
}

func TestConcurrentAppends(t *testing.T) {
	dir := t.TempDir()
	l, _ := newLogIn(t, dir)
	// A second Log over another store handle on the same file: two
	// processes (a server and a local command) appending together.
	l2, _ := newLogIn(t, dir)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lg := l
			if i%2 == 1 {
				lg = l2
			}
			if _, err := lg.Append(context.Background(), Event{Actor: "a", Action: "deploy", Object: fmt.Sprint(i)}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rep := verify(t, l)
	if rep.Problem != nil || rep.Events != 40 {
		t.Fatalf("%+v", rep)
	}
}

func TestListFilters(t *testing.T) {
	l, _ := newLog(t)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { clock = clock.Add(time.Minute); return clock }
	ctx := context.Background()
	for _, ev := range []Event{
		{Actor: "alice", Role: "admin", Action: "token.create", Object: "token/ci"},
		{Actor: "bob", Role: "editor", Action: "deploy", Object: "env/staging"},
		{Actor: "bob", Role: "editor", Action: "deploy", Object: "env/production", Outcome: Denied},
		{Actor: "", Action: "login", Object: "/api/v1/status", Outcome: LoginFailed},
		{Actor: "alice", Role: "admin", Action: "token.revoke", Object: "token/ci"},
		{Actor: "alice", Role: "admin", Action: "tokens", Object: "x"},
	} {
		if _, err := l.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(f Filter) string {
		evs, err := l.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, e := range evs {
			s = append(s, fmt.Sprint(e.ID))
		}
		return strings.Join(s, ",")
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// ListRecords encodes as List does.
	a, _ := l.List(ctx, Filter{})
	b, _ := l.ListRecords(ctx, Filter{})
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Errorf("ListRecords encodes differently:\n%s\n%s", ja, jb)
	}
	for _, tc := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, "6,5,4,3,2,1"},
		{Filter{Limit: 2}, "6,5"},
		{Filter{Actor: "alice"}, "6,5,1"},
		{Filter{Action: "token"}, "5,1"},
		{Filter{Action: "token.create"}, "1"},
		{Filter{Action: "deploy", Outcome: Denied}, "3"},
		{Filter{Outcome: LoginFailed}, "4"},
		{Filter{Object: "env/staging"}, "2"},
		{Filter{Since: start.Add(3 * time.Minute)}, "6,5,4,3"},
		{Filter{Until: start.Add(3 * time.Minute)}, "2,1"},
		{Filter{Since: start.Add(2 * time.Minute), Until: start.Add(4 * time.Minute)}, "3,2"},
		{Filter{BeforeID: 4, Limit: 2}, "3,2"},
		{Filter{Action: "%"}, ""},
	} {
		if got := ids(tc.f); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestExport(t *testing.T) {
	l, _ := newLog(t)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { clock = clock.Add(time.Minute); return clock }
	evs := appendN(t, l, 4)
	var buf bytes.Buffer
	n, err := l.Export(context.Background(), &buf, evs[1].Time)
	if err != nil || n != 3 {
		t.Fatalf("exported %d, %v", n, err)
	}
	sc := bufio.NewScanner(&buf)
	var got []Event
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got = append(got, ev)
	}
	if len(got) != 3 || got[0].ID != 2 || got[2].ID != 4 {
		t.Fatalf("exported %+v", got)
	}
	// The lines alone verify: each hash recomputes and links to the one before.
	for i, ev := range got {
		h, _ := ev.computeHash()
		if h != ev.Hash || (i > 0 && ev.PrevHash != got[i-1].Hash) {
			t.Errorf("exported event %d does not verify", ev.ID)
		}
	}
}

func TestSecretsRedacted(t *testing.T) {
	l, db := newLog(t)
	secret := "gnt_ab12cd34_" + strings.Repeat("Zx9", 12)
	ev, err := l.Append(context.Background(), Event{Actor: "a", Action: "token.create", Object: "token/ci",
		Detail: map[string]string{"password": "hunter2", "note": "made " + secret, "client_secret": "s3", "role": "viewer"}})
	if err != nil {
		t.Fatal(err)
	}
	var stored string
	db.QueryRow(`SELECT detail FROM audit_events WHERE id=?`, ev.ID).Scan(&stored)
	for _, s := range []string{"hunter2", secret, "s3\""} {
		if strings.Contains(stored, s) {
			t.Errorf("stored detail %s holds a secret %q", stored, s)
		}
	}
	if ev.Detail["role"] != "viewer" || ev.Detail["password"] != "<secret>" {
		t.Errorf("detail %v", ev.Detail)
	}
	if p := verify(t, l).Problem; p != nil {
		t.Fatal(p)
	}
}

func TestBadEvents(t *testing.T) {
	l, _ := newLog(t)
	if _, err := l.Append(context.Background(), Event{Actor: "a"}); err == nil {
		t.Error("event without action accepted")
	}
	if _, err := l.Append(context.Background(), Event{Action: "x", Outcome: "maybe"}); err == nil {
		t.Error("unknown outcome accepted")
	}
	if rep := verify(t, l); rep.Events != 0 {
		t.Errorf("a refused event was stored: %+v", rep)
	}
}

func TestAppendManyContinuesTheChain(t *testing.T) {
	l, _ := newLog(t)
	appendN(t, l, 2)
	var evs []Event
	for i := range 500 {
		evs = append(evs, Event{Actor: "bulk", Action: "deploy", Object: fmt.Sprint(i), Time: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)})
	}
	if err := l.AppendMany(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 1)
	rep := verify(t, l)
	if rep.Problem != nil || rep.Events != 503 {
		t.Fatalf("%+v", rep)
	}
	if err := l.AppendMany(context.Background(), []Event{{Actor: "x"}}); err == nil {
		t.Error("an event without an action was accepted")
	}
}
