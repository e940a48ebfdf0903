package lint

import (
	"path"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// A RUN's shell script, read with mvdan.cc/sh (a POSIX/bash parser), so
// that `apt-get install` inside quotes, comments or a heredoc's data is not
// mistaken for a command, and `&&`, `;`, `|`, subshells and `if` are all
// followed.

// call is one simple command: its words, with quotes removed; a word that
// is not a literal (it expands a variable or a command) reads as "$".
type call []string

// name is the command's base name, after wrappers like sudo and env.
func (c call) name() string {
	if len(c) == 0 {
		return ""
	}
	return path.Base(c[0])
}

// sub is the first argument that is not a flag: install in
// `apt-get -y install gcc`.
func (c call) sub() string {
	for _, a := range c[1:] {
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}

// has reports whether one of the words is flag (or starts with flag=).
func (c call) has(flags ...string) bool {
	for _, a := range c[1:] {
		for _, f := range flags {
			if a == f || strings.HasPrefix(a, f+"=") {
				return true
			}
		}
	}
	return false
}

// operands are the arguments after the subcommand that are not flags (and
// not a flag's value, for the flags that take one).
func (c call) operands(valueFlags ...string) []string {
	var out []string
	seenSub := false
	skip := false
	for _, a := range c[1:] {
		if skip {
			skip = false
			continue
		}
		if strings.HasPrefix(a, "-") {
			for _, f := range valueFlags {
				if a == f {
					skip = true
				}
			}
			continue
		}
		if !seenSub {
			seenSub = true
			continue
		}
		out = append(out, a)
	}
	return out
}

// flagValue is the value of a flag written `--flag value` or `--flag=value`.
func (c call) flagValue(flags ...string) string {
	for i, a := range c[1:] {
		for _, f := range flags {
			if a == f && i+2 < len(c) {
				return c[i+2]
			}
			if strings.HasPrefix(a, f+"=") {
				return strings.TrimPrefix(a, f+"=")
			}
		}
	}
	return ""
}

// wrappers run the command that follows them.
var wrappers = map[string]bool{"sudo": true, "env": true, "command": true, "exec": true, "nohup": true, "time": true}

// calls parses a shell script and lists its simple commands in order. A
// script the parser rejects gives no commands: a rule cannot judge what it
// cannot read, and `docker build` will say what is wrong with it.
func calls(script string) []call {
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(script), "")
	if err != nil {
		return nil
	}
	var out []call
	syntax.Walk(f, func(n syntax.Node) bool {
		ce, ok := n.(*syntax.CallExpr)
		if !ok || len(ce.Args) == 0 {
			return true
		}
		words := make(call, 0, len(ce.Args))
		for _, w := range ce.Args {
			words = append(words, wordString(w))
		}
		// sudo apt-get, env DEBIAN_FRONTEND=noninteractive apt-get
		for len(words) > 1 && wrappers[path.Base(words[0])] {
			words = words[1:]
			for len(words) > 1 && (strings.HasPrefix(words[0], "-") || strings.Contains(words[0], "=")) {
				words = words[1:]
			}
		}
		out = append(out, words)
		return true
	})
	return out
}

// wordString is a word with its quotes removed; parts that expand (a
// variable, a command substitution) read as "$".
func wordString(w *syntax.Word) string {
	var b strings.Builder
	var part func(p syntax.WordPart)
	part = func(p syntax.WordPart) {
		switch x := p.(type) {
		case *syntax.Lit:
			b.WriteString(x.Value)
		case *syntax.SglQuoted:
			b.WriteString(x.Value)
		case *syntax.DblQuoted:
			for _, q := range x.Parts {
				part(q)
			}
		default:
			b.WriteString("$")
		}
	}
	for _, p := range w.Parts {
		part(p)
	}
	return b.String()
}

// script is a RUN's shell text as the shell sees it. A heredoc that is the
// command itself (RUN <<EOF, RUN bash <<EOF) is the script; other heredocs
// are data for the command line (RUN cat <<EOF > /etc/x), appended so that
// the parser reads them as such.
func script(cmdline string, heredocs []heredoc) string {
	if len(heredocs) == 0 {
		return cmdline
	}
	// The heredoc is the script when the line is only the marker and maybe
	// a shell: RUN <<EOF, RUN <<EOF bash, RUN bash <<EOF.
	fields := strings.Fields(cmdline)
	marker, shellOnly := 0, true
	for _, f := range fields {
		switch {
		case strings.HasPrefix(f, "<<"):
			marker++
		case !shells[path.Base(f)]:
			shellOnly = false
		}
	}
	if marker == 1 && shellOnly && len(fields) <= 2 {
		return heredocs[0].data
	}
	var b strings.Builder
	b.WriteString(cmdline)
	b.WriteString("\n")
	for _, h := range heredocs {
		b.WriteString(h.data)
		if !strings.HasSuffix(h.data, "\n") {
			b.WriteString("\n")
		}
		b.WriteString(h.name)
		b.WriteString("\n")
	}
	return b.String()
}

type heredoc struct{ name, data string }

var shells = map[string]bool{"sh": true, "bash": true, "ash": true, "dash": true, "zsh": true}
