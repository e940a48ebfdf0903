package lint

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// dockerfile is one parsed Dockerfile and what its rules found.
type dockerfile struct {
	file     string // as findings name it
	lines    []string
	ast      *parser.Result
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
	// nodes are the top-level instructions, in order.
	nodes []*parser.Node
	lex   *shell.Lex

	findings []Finding
	ignores  []ignore
}

// parseDockerfile reads a Dockerfile with BuildKit's parser. file is the
// name findings and errors use.
func parseDockerfile(file string, data []byte) (*dockerfile, error) {
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, dockerfileError(file, err)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, dockerfileError(file, err)
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("%w: %s: no FROM; a Dockerfile starts with FROM (after ARGs)", ErrInput, file)
	}
	lex := shell.NewLex(res.EscapeToken)
	lex.SkipUnsetEnv = true
	return &dockerfile{
		file: file, lines: strings.Split(string(data), "\n"), ast: res,
		stages: stages, metaArgs: metaArgs, nodes: res.AST.Children, lex: lex,
	}, nil
}

// dockerfileError says where BuildKit's parser stopped, as file:line.
func dockerfileError(file string, err error) error {
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		msg := err
		if inner := errors.Unwrap(le); inner != nil {
			msg = inner
		}
		return fmt.Errorf("%w: %s:%d: %v (docker build would refuse it too)", ErrInput, file, le.Locations[0][0].Start.Line, msg)
	}
	return fmt.Errorf("%w: %s: %v (docker build would refuse it too)", ErrInput, file, err)
}

// lintDockerfile runs every Dockerfile rule. hasHealth says that every
// compose service running this image has a health check of its own (GL1006
// then does not apply).
func lintDockerfile(file string, data []byte, hasHealth bool) ([]Finding, error) {
	d, err := parseDockerfile(file, data)
	if err != nil {
		return nil, err
	}
	d.readIgnores()
	d.secrets()
	d.baseImages()
	d.adds()
	chain := d.finalChain()
	d.user(chain)
	if !hasHealth {
		d.healthcheck(chain)
	}
	d.runs(chain)
	return d.applyIgnores(), nil
}

func (d *dockerfile) report(rule string, loc []parser.Range, msg string) {
	line := 1
	if len(loc) > 0 {
		line = loc[0].Start.Line
	}
	d.findings = append(d.findings, newFinding(rule, d.file, line, msg))
}

// expand resolves $VAR and ${VAR} from the given variables (name=value),
// and removes quotes. An unknown variable stays as written.
func (d *dockerfile) expand(word string, env []string) string {
	out, _, err := d.lex.ProcessWord(word, shell.EnvsFromSlice(env))
	if err != nil {
		return word
	}
	return out
}

// metaEnv is the ARGs before the first FROM with their defaults: what a
// FROM line can use.
func (d *dockerfile) metaEnv() []string {
	var env []string
	for _, a := range d.metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				env = append(env, kv.Key+"="+d.expand(*kv.Value, env))
			}
		}
	}
	return env
}

// GL1001: secrets in ENV or ARG, in any stage (a build stage's ARG is in
// the build's history and logs, and ENV values are in the Dockerfile, in git).
func (d *dockerfile) secrets() {
	check := func(kind, key string, value *string, loc []parser.Range) {
		if secretName(key) {
			how := "its name says it holds a secret"
			if kind == "ARG" {
				d.report("GL1001", loc, fmt.Sprintf("ARG %s: %s, and build arguments stay in the image's history (docker history shows them)", key, how))
			} else {
				d.report("GL1001", loc, fmt.Sprintf("ENV %s: %s, and ENV stays in the image for everyone who pulls it", key, how))
			}
			return
		}
		if value == nil {
			return
		}
		if what, ok := secretValue(d.expand(*value, nil)); ok {
			d.report("GL1001", loc, fmt.Sprintf("%s %s: its value looks like %s (not shown here); anything in ENV or ARG stays in the image and its history", kind, key, what))
		}
	}
	for _, a := range d.metaArgs {
		for _, kv := range a.Args {
			check("ARG", kv.Key, kv.Value, a.Location())
		}
	}
	for _, st := range d.stages {
		for _, c := range st.Commands {
			switch c := c.(type) {
			case *instructions.ArgCommand:
				for _, kv := range c.Args {
					check("ARG", kv.Key, kv.Value, c.Location())
				}
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					v := kv.Value
					check("ENV", kv.Key, &v, c.Location())
				}
			}
		}
	}
}

// stageIndex is the index of the stage named name (case-insensitive, as
// BuildKit matches it) before stage i, or -1.
func (d *dockerfile) stageIndex(name string, before int) int {
	for j := before - 1; j >= 0; j-- {
		if d.stages[j].Name != "" && strings.EqualFold(d.stages[j].Name, name) {
			return j
		}
	}
	return -1
}

// GL1004 and GL1005: every FROM that names an image (not scratch, not an
// earlier stage) names a version, not latest and not nothing.
func (d *dockerfile) baseImages() {
	env := d.metaEnv()
	for i, st := range d.stages {
		base := d.expand(st.BaseName, env)
		if strings.Contains(base, "$") || strings.EqualFold(base, "scratch") || d.stageIndex(base, i) >= 0 {
			continue // unresolved ARG, no image, or an earlier stage
		}
		ref, err := reference.ParseNormalizedNamed(base)
		if err != nil {
			continue // docker build says what is wrong with it
		}
		if _, ok := ref.(reference.Digested); ok {
			continue // pinned: the tag is only a label
		}
		tagged, ok := ref.(reference.Tagged)
		switch {
		case !ok:
			d.report("GL1004", st.Location, fmt.Sprintf("FROM %s: no tag, so it means %s:latest, whatever that is on the day of the build", base, base))
		case tagged.Tag() == "latest":
			d.report("GL1005", st.Location, fmt.Sprintf("FROM %s: latest moves, so two builds of this commit can differ", base))
		}
	}
}

var archiveRE = regexp.MustCompile(`\.(tar|tar\.gz|tgz|tar\.bz2|tbz2?|tar\.xz|txz|tar\.zst)$`)

// GL1008 and GL1009: ADD of remote URLs without a checksum, and ADD where
// COPY would do.
func (d *dockerfile) adds() {
	for _, st := range d.stages {
		for _, c := range st.Commands {
			add, ok := c.(*instructions.AddCommand)
			if !ok {
				continue
			}
			local := len(add.SourceContents) > 0
			for _, src := range add.SourcePaths {
				switch {
				case isGitSource(src):
					if !pinnedGit(src) {
						d.report("GL1008", add.Location(), fmt.Sprintf("ADD %s: a git source at a branch or tag, which can move; pin a commit (#<sha>)", src))
					}
				case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
					if add.Checksum == "" {
						d.report("GL1008", add.Location(), fmt.Sprintf("ADD %s: downloaded at build time without a checksum, so nothing checks what arrives", src))
					}
				case !archiveRE.MatchString(strings.ToLower(src)):
					local = true
				}
			}
			if local {
				d.report("GL1009", add.Location(), "ADD copies local files here; COPY does the same without ADD's archive unpacking")
			}
		}
	}
}

func isGitSource(src string) bool {
	return strings.HasPrefix(src, "git@") || strings.HasPrefix(src, "git://") ||
		strings.HasPrefix(src, "ssh://") || strings.Contains(strings.SplitN(src, "#", 2)[0], ".git") && strings.Contains(src, "://")
}

var commitRE = regexp.MustCompile(`#[0-9a-f]{40}(:.*)?$`)

func pinnedGit(src string) bool { return commitRE.MatchString(src) }

// finalChain is the final stage followed by the stages it is built FROM,
// nearest first: the stages whose layers and settings the image carries.
func (d *dockerfile) finalChain() []int {
	chain := []int{len(d.stages) - 1}
	env := d.metaEnv()
	for {
		i := chain[len(chain)-1]
		parent := d.stageIndex(d.expand(d.stages[i].BaseName, env), i)
		if parent < 0 {
			return chain
		}
		chain = append(chain, parent)
	}
}

// rootUsers are the USER values that mean root.
var rootUsers = map[string]bool{"root": true, "0": true}

// GL1002 and GL1003: the image's user, from the last USER of the final
// stage or the stages it is built from.
func (d *dockerfile) user(chain []int) {
	final := d.stages[chain[0]]
	for _, i := range chain {
		cmds := d.stages[i].Commands
		for j := len(cmds) - 1; j >= 0; j-- {
			u, ok := cmds[j].(*instructions.UserCommand)
			if !ok {
				continue
			}
			name := d.expand(u.User, d.stageEnv(i, j))
			user, _, _ := strings.Cut(name, ":")
			if rootUsers[strings.ToLower(user)] {
				d.report("GL1002", u.Location(), fmt.Sprintf("USER %s is the image's last USER, so its containers run as root", u.User))
			}
			return
		}
	}
	base := strings.ToLower(d.expand(d.stages[chain[len(chain)-1]].BaseName, d.metaEnv()))
	if strings.Contains(base, "nonroot") || strings.Contains(base, "rootless") {
		return // distroless :nonroot and the like set a non-root user themselves
	}
	msg := "the final stage sets no USER, so its containers run as root unless the base image says otherwise"
	if base == "scratch" {
		msg = "the final stage is FROM scratch and sets no USER, so its containers run as root"
	}
	d.report("GL1003", final.Location, msg)
}

// stageEnv is what ARG and ENV set in stage i before command j: enough to
// expand a USER ${APP_UID}. As in docker build, an ARG before the first
// FROM is seen in a stage only when the stage declares it again.
func (d *dockerfile) stageEnv(i, j int) []string {
	meta := d.metaEnv()
	var env []string
	for _, c := range d.stages[i].Commands[:j] {
		switch c := c.(type) {
		case *instructions.ArgCommand:
			for _, kv := range c.Args {
				if kv.Value != nil {
					env = append(env, kv.Key+"="+d.expand(*kv.Value, env))
					continue
				}
				for k := len(meta) - 1; k >= 0; k-- {
					if strings.HasPrefix(meta[k], kv.Key+"=") {
						env = append(env, meta[k])
						break
					}
				}
			}
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				env = append(env, kv.Key+"="+d.expand(kv.Value, env))
			}
		}
	}
	return env
}

// GL1006: a HEALTHCHECK (other than NONE) in the final stage or the stages
// it is built from.
func (d *dockerfile) healthcheck(chain []int) {
	for _, i := range chain {
		cmds := d.stages[i].Commands
		for j := len(cmds) - 1; j >= 0; j-- {
			if h, ok := cmds[j].(*instructions.HealthCheckCommand); ok {
				if h.Health != nil && len(h.Health.Test) > 0 && h.Health.Test[0] == "NONE" {
					d.report("GL1006", h.Location(), "HEALTHCHECK NONE turns the image's health check off, and no compose service gantry read gives the image one")
				}
				return
			}
		}
	}
	d.report("GL1006", d.stages[chain[0]].Location, "the image has no HEALTHCHECK, and no compose service gantry read gives it one: nothing tells a deploy when it is ready or broken")
}
