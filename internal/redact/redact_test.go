package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	const pem = "-----BEGIN KEY-----\nMIIBVwIBADANBgkqhkiG9w0BAQEFAASCAUEw\n-----END KEY-----\n"
	cases := []struct {
		name   string
		values []string
		in     string
		want   string
	}{
		{"nothing known", nil, "password=hunter22", "password=hunter22"},
		{"whole value", []string{"hunter22"}, "password=hunter22!", "password=<redacted>!"},
		{"every occurrence", []string{"hunter22"}, "hunter22 hunter22", "<redacted> <redacted>"},
		{"file with a trailing newline", []string{"s3cr3t-value\n"}, "app: s3cr3t-value loaded", "app: <redacted> loaded"},
		{"lines stay lines", []string{"s3cr3t-value\n"}, "a=s3cr3t-value\nb\n", "a=<redacted>\nb\n"},
		{"a line of a multi-line key", []string{pem}, "line: MIIBVwIBADANBgkqhkiG9w0BAQEFAASCAUEw", "line: <redacted>"},
		{"inside JSON", []string{`pa"ss\word`}, `{"v":"pa\"ss\\word"}`, `{"v":"<redacted>"}`},
		{"longest first", []string{"abcd", "abcdefgh"}, "x abcdefgh y abcd", "x <redacted> y <redacted>"},
		{"too short to redact", []string{"abc"}, "abc abcd", "abc abcd"},
		{"empty", []string{""}, "text", "text"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			for _, v := range tc.values {
				r.Add([]byte(v))
			}
			if got := r.String(tc.in); got != tc.want {
				t.Fatalf("String(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestNilRedactsNothing(t *testing.T) {
	var r *Redactor
	r.Add([]byte("value"))
	if r.String("value") != "value" || r.Known() {
		t.Fatal("a nil redactor changed a string")
	}
}

func TestErrorKeepsTheChain(t *testing.T) {
	r := New()
	r.Add([]byte("topsecret"))
	base := fmt.Errorf("reading topsecret: %w", fs.ErrNotExist)
	err := r.Error(fmt.Errorf("deploy: %w", base))
	if strings.Contains(err.Error(), "topsecret") || !strings.Contains(err.Error(), "reading <redacted>") {
		t.Fatalf("message: %q", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("errors.Is lost the cause")
	}
	plain := errors.New("nothing to hide")
	if r.Error(plain) != plain || r.Error(nil) != nil {
		t.Fatal("an error without a value should come back as is")
	}
}

func TestWriter(t *testing.T) {
	r := New()
	r.Add([]byte("topsecret"))
	var b bytes.Buffer
	w := r.Writer(&b)
	n, err := fmt.Fprintf(w, "value=%s\n", "topsecret")
	if err != nil || n != len("value=topsecret\n") {
		t.Fatalf("Write returned %d, %v", n, err)
	}
	json.NewEncoder(w).Encode(map[string]string{"v": "topsecret"})
	if strings.Contains(b.String(), "topsecret") {
		t.Fatalf("writer leaked: %q", b.String())
	}
}

type stringer struct{ s string }

func (s stringer) String() string { return s.s }

func TestHandler(t *testing.T) {
	r := New()
	r.Add([]byte("topsecret"))
	var b bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&b, nil), slog.NewJSONHandler(&b, nil)} {
		log := r.Logger(slog.New(h)).With("pre", "topsecret")
		log.Info("saw topsecret", "s", "x topsecret", "err", errors.New("topsecret"),
			"any", stringer{"topsecret"}, slog.Group("g", "k", "topsecret"), "n", 3)
		log.WithGroup("grp").Info("m", "k", "topsecret")
	}
	out := b.String()
	if strings.Contains(out, "topsecret") {
		t.Fatalf("log leaked:\n%s", out)
	}
	if !strings.Contains(out, "n=3") || strings.Count(out, Mask) < 10 {
		t.Fatalf("log lost its content:\n%s", out)
	}
}

// A value cut in two by a buffer's boundary is masked all the same.
func TestLineWriter(t *testing.T) {
	r := New()
	r.Add([]byte("topsecret"))
	var b bytes.Buffer
	w := r.LineWriter(&b)
	for _, chunk := range []string{"a=top", "secret\nb=tops", "ecret\nc=topsecret"} {
		if n, err := w.Write([]byte(chunk)); err != nil || n != len(chunk) {
			t.Fatalf("Write: %d %v", n, err)
		}
	}
	if b.String() != "a=<redacted>\nb=<redacted>\n" {
		t.Fatalf("before Flush: %q", b.String())
	}
	w.Flush()
	if b.String() != "a=<redacted>\nb=<redacted>\nc=<redacted>" {
		t.Fatalf("after Flush: %q", b.String())
	}
}
