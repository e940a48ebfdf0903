package lint

import (
	"fmt"
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/reference"
	"go.yaml.in/yaml/v3"
)

// composeModel is one resolved compose model to check: an environment of
// a gantry project, or compose files read on their own.
type composeModel struct {
	project *types.Project
	// env is the gantry environment ("" for files read on their own);
	// protected says whether it is a protected environment (GL2009).
	env       string
	protected bool
	// probes are the services gantry probes itself in env; jobs are the
	// one-shot services, which need no health check.
	probes map[string]bool
	jobs   map[string]bool
	// pinned are the services whose image gantry releases, in an
	// environment that only gantry promote reaches: there they run by the
	// release's digest, whatever tag the compose file names (GL2009).
	pinned map[string]bool
	// rel turns an absolute path into the name findings use.
	rel func(string) string
}

// lintCompose runs the compose rules over a resolved model.
func lintCompose(m *composeModel) []Finding {
	idx := newYAMLIndex(m.project.ComposeFiles, m.rel)
	var out []Finding
	names := m.project.ServiceNames()
	sort.Strings(names)
	for _, name := range names {
		svc := m.project.Services[name]
		var fs []Finding
		add := func(rule string, loc location, msg string) {
			f := newFinding(rule, loc.file, loc.line, msg)
			f.Column = loc.col
			f.Service = name
			f.Environment = m.env
			fs = append(fs, f)
		}
		at := func(keys ...string) location { return idx.locate(name, nil, keys...) }

		if svc.Privileged {
			add("GL2001", at("privileged"), fmt.Sprintf("service %s is privileged: it has every capability and the host's devices, so a break-out is one step away", name))
		}
		if svc.NetworkMode == "host" {
			add("GL2002", at("network_mode"), fmt.Sprintf("service %s uses the host's network: every port it opens is open on the host, and it sees the host's interfaces", name))
		}
		if svc.Pid == "host" {
			add("GL2003", at("pid"), fmt.Sprintf("service %s shares the host's PID namespace: it sees, and may signal, every process on the host", name))
		}
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind && path.Base(v.Source) == "docker.sock" {
				src := v.Source
				add("GL2004", idx.locate(name, containing("docker.sock"), "volumes"),
					fmt.Sprintf("service %s mounts the Docker socket (%s): whoever controls the service controls the host's Docker, which is root on the host", name, src))
			}
		}
		for _, key := range slices.Sorted(maps.Keys(svc.Environment)) {
			val := svc.Environment[key]
			loc := idx.locateVar(name, key, "environment")
			if secretName(key) {
				add("GL2005", loc, fmt.Sprintf("service %s: environment %s holds a secret (by its name); container environment shows in docker inspect, in /proc and in crash reports", name, key))
				continue
			}
			if val != nil {
				if what, ok := secretValue(*val); ok {
					add("GL2005", loc, fmt.Sprintf("service %s: environment %s looks like %s (not shown here); pass secrets as files under /run/secrets", name, key, what))
				}
			}
		}
		if svc.Build != nil {
			for _, key := range slices.Sorted(maps.Keys(svc.Build.Args)) {
				val := svc.Build.Args[key]
				loc := idx.locateVar(name, key, "build", "args")
				if secretName(key) {
					add("GL1001", loc, fmt.Sprintf("service %s passes the build argument %s, a secret (by its name): build arguments stay in the image's history", name, key))
				} else if val != nil {
					if what, ok := secretValue(*val); ok {
						add("GL1001", loc, fmt.Sprintf("service %s: build argument %s looks like %s (not shown here); build arguments stay in the image's history", name, key, what))
					}
				}
			}
		}
		if svc.Build != nil && svc.Build.DockerfileInline != "" {
			fs = append(fs, inlineDockerfile(svc, name, idx, hasHealth(svc) || m.probes[name] || m.jobs[name])...)
		}
		if !svc.ReadOnly {
			add("GL2006", at(), fmt.Sprintf("service %s has a writable root filesystem; with read_only: true an intruder cannot change its binaries or drop tools", name))
		}
		for _, p := range svc.Ports {
			if ip := strings.Trim(p.HostIP, "[]"); ip == "" || ip == "0.0.0.0" || ip == "::" {
				port, find := p.Published, p.Published
				if port == "" {
					// "9200": Docker picks a host port, on every interface.
					port, find = fmt.Sprintf("%d (on a host port Docker picks)", p.Target), fmt.Sprint(p.Target)
				}
				add("GL2007", idx.locate(name, containing(find), "ports"),
					fmt.Sprintf("service %s publishes port %s on every interface of the host; anyone who reaches the host reaches the service", name, port))
			}
		}
		if healthDisabled(svc) && !m.jobs[name] && !m.probes[name] {
			where := "no gantry probe checks it either"
			if m.env == "" {
				where = "nothing tells a deploy whether it works"
			}
			add("GL2008", at("healthcheck"), fmt.Sprintf("service %s turns its health check off, and %s", name, where))
		}
		if m.protected && svc.Image != "" && !m.pinned[name] {
			if why, floating := floatingTag(svc.Image); floating {
				add("GL2009", at("image"), fmt.Sprintf("service %s runs %s in a protected environment, and %s: what runs there can change without a deploy, and a rollback cannot bring back what ran before", name, svc.Image, why))
			}
		}
		out = append(out, applyComposeIgnores(fs, svc, idx, name)...)
	}
	return out
}

// healthDisabled: healthcheck.disable, or test: [NONE].
func healthDisabled(svc types.ServiceConfig) bool {
	h := svc.HealthCheck
	return h != nil && (h.Disable || len(h.Test) > 0 && h.Test[0] == "NONE")
}

// hasHealth: the service sets a healthcheck of its own.
func hasHealth(svc types.ServiceConfig) bool {
	h := svc.HealthCheck
	return h != nil && !healthDisabled(svc) && len(h.Test) > 0
}

var (
	versionTagRE = regexp.MustCompile(`^v?[0-9]+(\.[0-9]+)*([-+_.][0-9A-Za-z][0-9A-Za-z.+_-]*)?$`)
	commitTagRE  = regexp.MustCompile(`^(sha-)?[0-9a-f]{7,64}$`)
)

// floatingTag reports whether an image reference can point at other bytes
// tomorrow: no tag, latest, or a tag that is not a version or a commit
// (main, stable, edge). A digest pins it, whatever the tag.
func floatingTag(image string) (string, bool) {
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", false
	}
	if _, ok := ref.(reference.Digested); ok {
		return "", false
	}
	tagged, ok := ref.(reference.Tagged)
	switch {
	case !ok:
		return "it has no tag, which means latest", true
	case tagged.Tag() == "latest":
		return "latest moves with every push", true
	case !versionTagRE.MatchString(tagged.Tag()) && !commitTagRE.MatchString(tagged.Tag()):
		return fmt.Sprintf("%q is not a version and can move", tagged.Tag()), true
	}
	return "", false
}

// applyComposeIgnores reads the service's x-gantry-lint extension and drops
// the findings it ignores (with a reason); what is wrong with the extension
// becomes findings itself.
func applyComposeIgnores(fs []Finding, svc types.ServiceConfig, idx *yamlIndex, name string) []Finding {
	ext, ok := svc.Extensions["x-gantry-lint"]
	if !ok {
		return fs
	}
	loc := idx.locate(name, nil, "x-gantry-lint")
	bad := func(msg string) Finding {
		f := newFinding("GL0001", loc.file, loc.line, fmt.Sprintf("service %s: x-gantry-lint %s; write ignore: [{rule: GL2006, reason: \"why\"}]", name, msg))
		f.Service = name
		f.Column = loc.col
		return f
	}
	m, ok := ext.(map[string]any)
	if !ok {
		return append(fs, bad("is not a mapping"))
	}
	list, ok := m["ignore"].([]any)
	if !ok {
		return append(fs, bad("has no ignore list"))
	}
	var extra []Finding
	ignored := map[string]bool{}
	for _, item := range list {
		var rule, reason string
		switch it := item.(type) {
		case string:
			rule = it
		case map[string]any:
			rule, _ = it["rule"].(string)
			reason, _ = it["reason"].(string)
		}
		if rule == "" {
			extra = append(extra, bad("has an entry without a rule"))
			continue
		}
		efs, ig := checkIgnore([]string{strings.ToUpper(rule)}, strings.TrimSpace(reason), loc.file, loc.line)
		for i := range efs {
			efs[i].Service = name
			efs[i].Column = loc.col
		}
		extra = append(extra, efs...)
		if ig != nil {
			ignored[ig.rules[0]] = true
		}
	}
	out := fs[:0]
	for _, f := range fs {
		if !ignored[f.Rule] {
			out = append(out, f)
		}
	}
	return append(out, extra...)
}

// inlineDockerfile lints a build's dockerfile_inline, with its findings
// at their lines in the compose file. A Dockerfile that does not parse is
// reported by docker build, not here.
func inlineDockerfile(svc types.ServiceConfig, name string, idx *yamlIndex, healthy bool) []Finding {
	file, offset := idx.inlineStart(name)
	fs, err := lintDockerfile(file, []byte(svc.Build.DockerfileInline), healthy)
	if err != nil {
		return nil
	}
	for i := range fs {
		fs[i].Line += offset
		fs[i].Service = name
	}
	return fs
}

// inlineStart is the compose file that writes a service's
// dockerfile_inline and the number of lines before its first line.
func (x *yamlIndex) inlineStart(svc string) (string, int) {
	for i := len(x.roots) - 1; i >= 0; i-- {
		k, v := lookup(x.roots[i], "services", svc, "build", "dockerfile_inline")
		if k == nil {
			continue
		}
		if v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
			return x.files[i], k.Line // a block: its first line is the next
		}
		return x.files[i], k.Line - 1
	}
	loc := x.locate(svc, nil, "build")
	return loc.file, loc.line - 1
}

// location is a place in a file, 1-based.
type location struct {
	file      string
	line, col int
}

// yamlIndex finds where in the compose files a value of the resolved model
// was written: the last file that writes it, as the last override wins.
type yamlIndex struct {
	files []string // as findings name them
	roots []*yaml.Node
}

func newYAMLIndex(files []string, rel func(string) string) *yamlIndex {
	x := &yamlIndex{}
	for _, f := range files {
		var doc yaml.Node
		if data, err := os.ReadFile(f); err == nil && yaml.Unmarshal(data, &doc) == nil && len(doc.Content) > 0 {
			x.roots = append(x.roots, doc.Content[0])
		} else {
			x.roots = append(x.roots, nil)
		}
		x.files = append(x.files, rel(f))
	}
	return x
}

// containing matches a sequence item whose text contains s: a short-syntax
// "127.0.0.1:80:80" or a long-syntax mapping with a value containing s.
func containing(s string) func(*yaml.Node) bool {
	var has func(n *yaml.Node) bool
	has = func(n *yaml.Node) bool {
		if n.Kind == yaml.ScalarNode {
			return strings.Contains(n.Value, s)
		}
		for _, c := range n.Content {
			if has(c) {
				return true
			}
		}
		return false
	}
	return has
}

// locate finds services.<svc>.<keys...> (and, when match is given, the item
// of that sequence it matches), falling back to services.<svc>, then to the
// first file.
func (x *yamlIndex) locate(svc string, match func(*yaml.Node) bool, keys ...string) location {
	if len(keys) == 0 {
		// The service itself: where it is defined, the first file.
		for i, root := range x.roots {
			if k, _ := lookup(root, "services", svc); k != nil {
				return location{x.files[i], k.Line, k.Column}
			}
		}
		if len(x.files) == 0 {
			return location{line: 1, col: 1}
		}
		return location{x.files[0], 1, 1}
	}
	full := append([]string{"services", svc}, keys...)
	for i := len(x.roots) - 1; i >= 0; i-- {
		k, v := lookup(x.roots[i], full...)
		if k == nil {
			continue
		}
		if match != nil && v.Kind == yaml.SequenceNode {
			for _, item := range v.Content {
				if match(item) {
					return location{x.files[i], item.Line, item.Column}
				}
			}
			continue
		}
		return location{x.files[i], k.Line, k.Column}
	}
	// Not written as such (a list form, a default): the nearest key that is.
	return x.locate(svc, nil, keys[:len(keys)-1]...)
}

// locateVar finds a variable of environment (or build.args) in the map or
// the list (KEY=value) form.
func (x *yamlIndex) locateVar(svc, key string, keys ...string) location {
	for i := len(x.roots) - 1; i >= 0; i-- {
		_, v := lookup(x.roots[i], append([]string{"services", svc}, keys...)...)
		if v == nil {
			continue
		}
		switch v.Kind {
		case yaml.MappingNode:
			for j := 0; j+1 < len(v.Content); j += 2 {
				if v.Content[j].Value == key {
					return location{x.files[i], v.Content[j].Line, v.Content[j].Column}
				}
			}
		case yaml.SequenceNode:
			for _, item := range v.Content {
				if k, _, _ := strings.Cut(item.Value, "="); k == key {
					return location{x.files[i], item.Line, item.Column}
				}
			}
		}
	}
	return x.locate(svc, nil, keys...)
}

// lookup walks mapping keys from n; it returns the key node and the value.
func lookup(n *yaml.Node, keys ...string) (*yaml.Node, *yaml.Node) {
	var key *yaml.Node
	for _, k := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil, nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				key, next = n.Content[i], n.Content[i+1]
			}
		}
		if next == nil {
			return nil, nil
		}
		n = next
	}
	return key, n
}
