package release

import (
	"strings"
	"testing"
)

func TestParseMessage(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want Message
	}{
		{"feat: add login", Message{Type: "feat", Subject: "add login"}},
		{"feat(auth): add login", Message{Type: "feat", Scope: "auth", Subject: "add login"}},
		{"FIX(Auth):  spaces  ", Message{Type: "fix", Scope: "Auth", Subject: "spaces"}},
		{"feat!: drop v1", Message{Type: "feat", Subject: "drop v1", Breaking: true, Note: "drop v1"}},
		{"refactor(api)!: ids\n\nBREAKING CHANGE: ids are strings\nnow\n\nRefs: #1", Message{Type: "refactor", Scope: "api", Subject: "ids", Breaking: true, Note: "ids are strings\nnow"}},
		{"fix: x\n\nBREAKING-CHANGE: y", Message{Type: "fix", Subject: "x", Breaking: true, Note: "y"}},
		{"fix: x\n\nBREAKING CHANGE #12 gone", Message{Type: "fix", Subject: "x", Breaking: true, Note: "12 gone"}},
		{"fix: x\r\n\r\nBREAKING CHANGE: y\r\n", Message{Type: "fix", Subject: "x", Breaking: true, Note: "y"}},
		{"fix: x\n\nBREAKING CHANGE:\n", Message{Type: "fix", Subject: "x", Breaking: true}},
		{"fix: x\n\nBREAKING CHANGES: y", Message{Type: "fix", Subject: "x"}},
		{"fix: x\n\nBREAKING: y", Message{Type: "fix", Subject: "x"}},
		{"fix: x\n\nsee BREAKING CHANGE: y", Message{Type: "fix", Subject: "x"}},
		{"fix: x\n\nbreaking change: y", Message{Type: "fix", Subject: "x"}},
		{"Merge pull request #3 from acme/x", Message{Subject: "Merge pull request #3 from acme/x"}},
		{"Merge branch 'x'\n\nBREAKING CHANGE: z", Message{Subject: "Merge branch 'x'", Breaking: true, Note: "z"}},
		{"my-type_2: ok", Message{Type: "my-type_2", Subject: "ok"}},
		{"feat:no space", Message{Subject: "feat:no space"}},
		{"feat :space before", Message{Subject: "feat :space before"}},
		{"feat(): empty scope", Message{Subject: "feat(): empty scope"}},
		{"feat(a(b)): nested", Message{Subject: "feat(a(b)): nested"}},
		{"feat(open: x", Message{Subject: "feat(open: x"}},
		{"feat: ", Message{Subject: "feat:"}},
		{"feat!:", Message{Subject: "feat!:"}},
		{"2fa: x", Message{Subject: "2fa: x"}},
		{"", Message{}},
		{"\n\n  feat: late", Message{Type: "feat", Subject: "late"}},
	} {
		got := ParseMessage(tc.msg)
		if got != tc.want {
			t.Errorf("ParseMessage(%q)\n got %+v\nwant %+v", tc.msg, got, tc.want)
		}
	}
}

func TestBumpOf(t *testing.T) {
	types := map[string]Bump{"feat": BumpMinor, "fix": BumpPatch, "perf": BumpPatch, "deps": BumpPatch}
	for msg, want := range map[string]Bump{
		"feat: a": BumpMinor, "fix: a": BumpPatch, "perf: a": BumpPatch, "deps: a": BumpPatch,
		"docs: a": BumpNone, "chore!: a": BumpMajor, "nonsense": BumpNone, "x\n\nBREAKING CHANGE: y": BumpMajor,
	} {
		if got := bumpOf(ParseMessage(msg), types); got != want {
			t.Errorf("bumpOf(%q) = %s, want %s", msg, got, want)
		}
	}
	for _, b := range []Bump{BumpNone, BumpPatch, BumpMinor, BumpMajor} {
		if p, ok := ParseBump(b.String()); !ok || p != b {
			t.Errorf("ParseBump(%s) = %v %v", b, p, ok)
		}
	}
	if _, ok := ParseBump("huge"); ok {
		t.Error("ParseBump(huge) ok")
	}
}

// FuzzParseMessage: never panics; a conventional result is well formed.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{"feat: a", "fix(x)!: y\n\nBREAKING CHANGE: z", "feat(", "BREAKING CHANGE: ", "a\nBREAKING-CHANGE #"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		m := ParseMessage(msg)
		if m.Type != "" {
			if m.Type != strings.ToLower(m.Type) || m.Subject == "" || strings.ContainsAny(m.Type, ":( !") {
				t.Fatalf("ParseMessage(%q) = %+v", msg, m)
			}
		}
		if m.Note != "" && !m.Breaking {
			t.Fatalf("note without breaking: %+v", m)
		}
	})
}
