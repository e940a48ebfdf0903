package lint

import (
	"fmt"
	"sort"
	"strings"
)

// Inline ignores. In a Dockerfile, a comment on the lines just before an
// instruction:
//
//	# gantry-lint ignore=GL1005,GL1004 reason="the base is pinned by digest in CI"
//	FROM node:latest
//
// In a compose file, an extension on the service:
//
//	x-gantry-lint:
//	  ignore:
//	    - { rule: GL2007, reason: "the proxy itself faces the network" }
//
// An ignore must say why: one without a reason ignores nothing and is a
// finding itself (GL0001), and so is one naming a rule that does not exist
// (GL0002).

// ignore silences rules for findings on lines from..to of file.
type ignore struct {
	rules    []string
	file     string
	from, to int
}

func (ig ignore) covers(f Finding) bool {
	if f.File != ig.file || f.Line < ig.from || f.Line > ig.to || strings.HasPrefix(f.Rule, "GL0") {
		return false
	}
	for _, r := range ig.rules {
		if r == f.Rule {
			return true
		}
	}
	return false
}

// ignorePrefix starts an ignore comment.
const ignorePrefix = "gantry-lint"

// parseIgnoreComment reads `gantry-lint ignore=ID[,ID] reason="..."`; ok is
// false for a comment that is not an ignore.
func parseIgnoreComment(c string) (ids []string, reason string, ok bool, err error) {
	c = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(c), "#"))
	rest, found := strings.CutPrefix(c, ignorePrefix)
	if !found || (rest != "" && rest[0] != ' ' && rest[0] != '\t' && rest[0] != ':') {
		return nil, "", false, nil
	}
	kv, err := keyValues(strings.TrimPrefix(rest, ":"))
	if err != nil {
		return nil, "", true, err
	}
	for k := range kv {
		if k != "ignore" && k != "reason" {
			return nil, "", true, fmt.Errorf("unknown key %q; write ignore=GL1001 reason=\"why\"", k)
		}
	}
	if kv["ignore"] == "" {
		return nil, "", true, fmt.Errorf("no rule; write ignore=GL1001 reason=\"why\"")
	}
	for _, id := range strings.Split(kv["ignore"], ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, strings.ToUpper(id))
		}
	}
	if len(ids) == 0 {
		return nil, "", true, fmt.Errorf("no rule; write ignore=GL1001 reason=\"why\"")
	}
	return ids, strings.TrimSpace(kv["reason"]), true, nil
}

// keyValues splits `a=b c="d e" f='g'` into a map.
func keyValues(s string) (map[string]string, error) {
	out := map[string]string{}
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i >= len(s) {
			return out, nil
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, fmt.Errorf("%q has no value; write key=value", strings.Fields(s[i:])[0])
		}
		key := strings.TrimSpace(s[i : i+eq])
		if strings.ContainsAny(key, " \t") {
			return nil, fmt.Errorf("%q has no value; write key=value", strings.Fields(key)[0])
		}
		i += eq + 1
		var val string
		if i < len(s) && (s[i] == '"' || s[i] == '\'') {
			q := s[i]
			end := strings.IndexByte(s[i+1:], q)
			if end < 0 {
				return nil, fmt.Errorf("the value of %s has no closing %c", key, q)
			}
			val = s[i+1 : i+1+end]
			i += end + 2
		} else {
			end := strings.IndexAny(s[i:], " \t")
			if end < 0 {
				end = len(s) - i
			}
			val = s[i : i+end]
			i += end
		}
		out[key] = val
	}
}

// readIgnores reads the ignore comments before each instruction.
func (d *dockerfile) readIgnores() {
	for _, n := range d.nodes {
		if len(n.PrevComment) == 0 {
			continue
		}
		for _, c := range n.PrevComment {
			ids, reason, ok, err := parseIgnoreComment(c)
			if !ok {
				continue
			}
			line := d.commentLine(c, n.StartLine)
			if err != nil {
				d.findings = append(d.findings, newFinding("GL0001", d.file, line, "this gantry-lint comment cannot be read: "+err.Error()))
				continue
			}
			d.addIgnore(ids, reason, line, n.StartLine, n.EndLine)
		}
	}
}

// addIgnore records an ignore written on line for lines from..to, or the
// findings that say what is wrong with it.
func (d *dockerfile) addIgnore(ids []string, reason string, line, from, to int) {
	fs, ig := checkIgnore(ids, reason, d.file, line)
	d.findings = append(d.findings, fs...)
	if ig != nil {
		ig.from, ig.to = from, to
		d.ignores = append(d.ignores, *ig)
	}
}

// checkIgnore validates an ignore's rules and reason: findings for what is
// wrong, and the ignore when it counts.
func checkIgnore(ids []string, reason, file string, line int) ([]Finding, *ignore) {
	var fs []Finding
	var known []string
	for _, id := range ids {
		if _, ok := rulesByID[id]; !ok {
			fs = append(fs, newFinding("GL0002", file, line, fmt.Sprintf("ignore names %s, which is not a rule", id)))
			continue
		}
		known = append(known, id)
	}
	if reason == "" {
		fs = append(fs, newFinding("GL0001", file, line, fmt.Sprintf("ignore=%s gives no reason, so it ignores nothing", strings.Join(ids, ","))))
		return fs, nil
	}
	if len(known) == 0 {
		return fs, nil
	}
	return fs, &ignore{rules: known, file: file}
}

// commentLine finds the line (1-based) of comment c in the comment block
// that ends before the instruction starting on line start.
func (d *dockerfile) commentLine(c string, start int) int {
	for l := start - 1; l >= 1 && l <= len(d.lines); l-- {
		text := strings.TrimSpace(d.lines[l-1])
		if strings.HasPrefix(text, "#") && strings.TrimSpace(text[1:]) == c {
			return l
		}
	}
	return start
}

// applyIgnores drops the findings an ignore covers.
func (d *dockerfile) applyIgnores() []Finding {
	return applyIgnores(d.findings, d.ignores)
}

func applyIgnores(fs []Finding, igs []ignore) []Finding {
	out := fs[:0]
next:
	for _, f := range fs {
		for _, ig := range igs {
			if ig.covers(f) {
				continue next
			}
		}
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}
