package scan

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultIgnoreFile is the ignore file read when gantry.yaml names none
// (and it exists), next to gantry.yaml.
const DefaultIgnoreFile = ".gantry-ignore.yaml"

// Ignore is one entry of the ignore file: a vulnerability (optionally only
// in one package) that does not fail the gate until the end of the day
// Expires (UTC), and why.
//
//	vulnerabilities:
//	  - id: CVE-2022-32149
//	    package: golang.org/x/text      # optional: only in this package
//	    reason: the service never parses Accept-Language headers
//	    expires: 2026-06-30
type Ignore struct {
	ID      string `json:"id"`
	Package string `json:"package,omitempty"`
	Reason  string `json:"reason"`
	// Expires is the last day (UTC) on which the entry ignores, written
	// YYYY-MM-DD.
	Expires string `json:"expires"`
	// Line is where the entry starts in the ignore file.
	Line int `json:"line,omitempty"`

	until time.Time
}

// Matches reports whether the entry is about vulnerability id in package pkg.
func (i Ignore) Matches(id, pkg string) bool {
	return strings.EqualFold(i.ID, id) && (i.Package == "" || i.Package == pkg)
}

// Expired reports whether the entry's last day has passed at now.
func (i Ignore) Expired(now time.Time) bool {
	until := i.until
	if until.IsZero() {
		d, err := time.Parse(time.DateOnly, i.Expires)
		if err != nil {
			return true
		}
		until = d
	}
	return !now.UTC().Before(until.AddDate(0, 0, 1))
}

// splitIgnores separates the entries that still ignore from the expired.
func splitIgnores(l []Ignore, now time.Time) (live, expired []Ignore) {
	for _, i := range l {
		if i.Expired(now) {
			expired = append(expired, i)
		} else {
			live = append(live, i)
		}
	}
	return live, expired
}

// LoadIgnores reads an ignore file. A missing file is an error: the caller
// decides whether the file is optional.
func LoadIgnores(path string) ([]Ignore, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: ignore file %s does not exist; create it, or fix gates.scan.ignore_file in gantry.yaml", ErrInput, path)
		}
		return nil, fmt.Errorf("ignore file %s: %w", path, err)
	}
	return ParseIgnores(path, data)
}

const ignoreExample = `vulnerabilities:
  - id: CVE-2022-32149
    package: golang.org/x/text
    reason: the service never parses Accept-Language headers
    expires: 2026-06-30`

// ParseIgnores reads the content of an ignore file named path. Every entry
// needs an id, a reason and an expiry date; an entry that lacks one is an
// error, not an entry that ignores forever.
func ParseIgnores(path string, data []byte) ([]Ignore, error) {
	bad := func(line int, format string, args ...any) error {
		where := path
		if line > 0 {
			where = fmt.Sprintf("%s:%d", path, line)
		}
		return fmt.Errorf("%w: %s: %s", ErrInput, where, fmt.Sprintf(format, args...))
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, bad(0, "not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(root.Content) == 0 {
		return nil, nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, bad(doc.Line, "want a mapping with a vulnerabilities list, like\n%s", ignoreExample)
	}
	var list *yaml.Node
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], doc.Content[i+1]
		if k.Value != "vulnerabilities" {
			return nil, bad(k.Line, "unknown field %q; the file has one list, vulnerabilities:, like\n%s", k.Value, ignoreExample)
		}
		list = v
	}
	if list == nil || (list.Kind == yaml.ScalarNode && list.Tag == "!!null") {
		return nil, nil
	}
	if list.Kind != yaml.SequenceNode {
		return nil, bad(list.Line, "vulnerabilities must be a list of entries, like\n%s", ignoreExample)
	}
	var out []Ignore
	for n, e := range list.Content {
		at := fmt.Sprintf("vulnerabilities[%d]", n)
		if e.Kind != yaml.MappingNode {
			return nil, bad(e.Line, "%s: want an entry with id, reason and expires, like\n%s", at, ignoreExample)
		}
		ig := Ignore{Line: e.Line}
		for i := 0; i+1 < len(e.Content); i += 2 {
			k, v := e.Content[i], e.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return nil, bad(v.Line, "%s.%s: want a single value", at, k.Value)
			}
			val := strings.TrimSpace(v.Value)
			switch k.Value {
			case "id":
				ig.ID = val
			case "package":
				ig.Package = val
			case "reason":
				ig.Reason = val
			case "expires":
				ig.Expires = val
			default:
				return nil, bad(k.Line, "%s: unknown field %q; an entry has id, package (optional), reason and expires", at, k.Value)
			}
		}
		if ig.ID != "" {
			at += " (" + ig.ID + ")"
		}
		switch {
		case ig.ID == "":
			return nil, bad(e.Line, "%s: id is missing; name the vulnerability, like id: CVE-2022-32149", at)
		case ig.Reason == "":
			return nil, bad(e.Line, "%s: reason is missing; say why the vulnerability does not matter here, like reason: the service never parses Accept-Language headers", at)
		case ig.Expires == "":
			return nil, bad(e.Line, "%s: expires is missing; give the last day the entry ignores, like expires: 2026-06-30, so that it is looked at again", at)
		}
		d, err := time.Parse(time.DateOnly, ig.Expires)
		if err != nil {
			return nil, bad(e.Line, "%s: expires: %q is not a date; write YYYY-MM-DD, like 2026-06-30", at, ig.Expires)
		}
		ig.until = d
		out = append(out, ig)
	}
	return out, nil
}
