package release

import (
	"strings"
)

// Bump is what a commit does to the version.
type Bump int

// Bumps, in increasing order: the largest one among the commits since the
// last release wins.
const (
	BumpNone Bump = iota
	BumpPatch
	BumpMinor
	BumpMajor
)

var bumpNames = [...]string{"none", "patch", "minor", "major"}

func (b Bump) String() string {
	if b < 0 || int(b) >= len(bumpNames) {
		return "none"
	}
	return bumpNames[b]
}

// MarshalText writes the bump's name, for JSON.
func (b Bump) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// ParseBump reads none, patch, minor or major.
func ParseBump(s string) (Bump, bool) {
	for i, n := range bumpNames {
		if n == s {
			return Bump(i), true
		}
	}
	return BumpNone, false
}

// defaultBumps are the conventional commit types that release something.
var defaultBumps = map[string]Bump{"feat": BumpMinor, "fix": BumpPatch, "perf": BumpPatch}

// Message is a commit message read as a conventional commit
// (https://www.conventionalcommits.org/en/v1.0.0/).
type Message struct {
	// Type is the lower-cased type (feat, fix, ...); empty when the header
	// is not `type(scope)!: subject`.
	Type  string
	Scope string
	// Subject is the header after the colon, or the whole first line of a
	// message that is not conventional.
	Subject string
	// Breaking: `type!:` or a BREAKING CHANGE footer.
	Breaking bool
	// Note is the text of the BREAKING CHANGE footer.
	Note string
}

// Conventional says whether the header had the `type: subject` form.
func (m Message) Conventional() bool { return m.Type != "" }

// ParseMessage reads a commit message. A header that does not follow the
// specification (no colon, no space after it, an empty subject or scope)
// leaves Type empty: such a commit bumps nothing. A BREAKING CHANGE footer
// still counts: it is an explicit statement, whatever the header says.
func ParseMessage(msg string) Message {
	msg = strings.TrimLeft(msg, " \t\r\n")
	header, body, _ := strings.Cut(msg, "\n")
	header = strings.TrimRight(header, " \t\r")
	m := Message{Subject: header}
	m.parseHeader(header)
	m.parseFooters(body)
	return m
}

func (m *Message) parseHeader(h string) {
	i := 0
	for i < len(h) && isTypeByte(h[i], i == 0) {
		i++
	}
	if i == 0 {
		return
	}
	typ := h[:i]
	scope := ""
	if i < len(h) && h[i] == '(' {
		end := strings.IndexByte(h[i:], ')')
		if end < 0 {
			return
		}
		scope = h[i+1 : i+end]
		if strings.TrimSpace(scope) == "" || strings.ContainsAny(scope, "(") {
			return
		}
		i += end + 1
	}
	bang := false
	if i < len(h) && h[i] == '!' {
		bang = true
		i++
	}
	if i+1 >= len(h) || h[i] != ':' || h[i+1] != ' ' {
		return
	}
	subject := strings.TrimSpace(h[i+2:])
	if subject == "" {
		return
	}
	m.Type = lowerASCII(typ)
	m.Scope = strings.TrimSpace(scope)
	m.Subject = subject
	if bang {
		m.Breaking = true
		m.Note = subject
	}
}

func isTypeByte(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return true
	case first:
		return false
	}
	return c >= '0' && c <= '9' || c == '-' || c == '_'
}

// lowerASCII lower-cases without allocating when s already is.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// parseFooters finds a `BREAKING CHANGE: text` or `BREAKING-CHANGE: text`
// footer (upper case, as the specification requires). The note runs to the
// next blank line.
func (m *Message) parseFooters(body string) {
	for body != "" {
		i := strings.Index(body, "BREAKING")
		if i < 0 {
			return
		}
		if i > 0 && body[i-1] != '\n' {
			body = body[i+len("BREAKING"):]
			continue
		}
		rest := body[i+len("BREAKING"):]
		if !strings.HasPrefix(rest, " CHANGE") && !strings.HasPrefix(rest, "-CHANGE") {
			body = rest
			continue
		}
		rest = rest[len(" CHANGE"):]
		var ok bool
		if rest, ok = strings.CutPrefix(rest, ":"); !ok {
			if rest, ok = strings.CutPrefix(rest, " #"); !ok {
				body = rest
				continue
			}
		}
		m.Breaking = true
		note := rest
		if end := strings.Index(note, "\n\n"); end >= 0 {
			note = note[:end]
		}
		m.Note = strings.TrimSpace(strings.ReplaceAll(note, "\r", ""))
		return
	}
}

// bumpOf is what a message bumps under the type table.
func bumpOf(m Message, types map[string]Bump) Bump {
	if m.Breaking {
		return BumpMajor
	}
	if m.Type == "" {
		return BumpNone
	}
	return types[m.Type]
}
