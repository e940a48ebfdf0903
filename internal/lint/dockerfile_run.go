package lint

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// The rules over RUN: package manager caches (GL1010 to GL1013) and build
// tools (GL1007), in the stages the final image is made of. A build stage
// that only feeds COPY --from may keep whatever it likes.

// buildTools are packages for building software, not for running it.
var buildTools = map[string]bool{
	"gcc": true, "g++": true, "cpp": true, "clang": true, "make": true, "cmake": true,
	"build-essential": true, "build-base": true, "autoconf": true, "automake": true,
	"libtool": true, "git": true, "golang": true, "go": true, "rust": true, "cargo": true,
	"rustc": true, "musl-dev": true, "libc-dev": true, "libc6-dev": true, "linux-headers": true,
	"gcc-c++": true, "kernel-devel": true, "maven": true, "gradle": true,
}

// buildTool reports whether a package name (maybe with a version,
// gcc=4:12.2.0-3 or gcc-12) is a build tool.
func buildTool(pkg string) (string, bool) {
	name := pkg
	if i := strings.IndexAny(name, "=<>~"); i > 0 {
		name = name[:i]
	}
	if buildTools[name] {
		return name, true
	}
	// gcc-12, golang-1.22, clang-16
	if i := strings.LastIndex(name, "-"); i > 0 && strings.Trim(name[i+1:], "0123456789.") == "" && buildTools[name[:i]] {
		return name, true
	}
	return "", false
}

// cacheMounted reports whether the RUN mounts a build cache at one of dirs,
// so that what the command caches there never reaches the image.
func cacheMounted(run *instructions.RunCommand, dirs ...string) bool {
	for _, m := range instructions.GetMounts(run) {
		if m.Type != instructions.MountTypeCache && m.Type != instructions.MountTypeTmpfs {
			continue
		}
		t := path.Clean(m.Target)
		for _, d := range dirs {
			if t == d || strings.HasPrefix(d, t+"/") {
				return true
			}
		}
	}
	return false
}

// removes reports whether some rm in calls removes a path under dir.
func removes(calls []call, dir string) bool {
	for _, c := range calls {
		if c.name() != "rm" {
			continue
		}
		for _, a := range c[1:] {
			if !strings.HasPrefix(a, "-") && (strings.HasPrefix(a, dir) || strings.HasPrefix(dir, strings.TrimSuffix(strings.TrimSuffix(a, "*"), "/")+"/")) {
				return true
			}
		}
	}
	return false
}

// installed is a build tool installed by a RUN and not (yet) removed.
type installed struct {
	run     *instructions.RunCommand
	virtual string // apk --virtual group it belongs to
}

func (d *dockerfile) runs(chain []int) {
	tools := map[string]installed{}
	pipNoCache := false
	// The chain is nearest first; RUNs happen in the order of the stages
	// from the oldest.
	for k := len(chain) - 1; k >= 0; k-- {
		st := d.stages[chain[k]]
		for j, c := range st.Commands {
			if env, ok := c.(*instructions.EnvCommand); ok {
				for _, kv := range env.Env {
					if kv.Key == "PIP_NO_CACHE_DIR" {
						v := strings.ToLower(d.expand(kv.Value, d.stageEnv(chain[k], j)))
						pipNoCache = v != "" && v != "0" && v != "false" && v != "no" && v != "off"
					}
				}
			}
			run, ok := c.(*instructions.RunCommand)
			if !ok {
				continue
			}
			// Expand evaluates the --mount flags (with the stage's variables),
			// which cacheMounted reads.
			env := d.stageEnv(chain[k], j)
			if err := run.Expand(func(w string) (string, error) { return d.expand(w, env), nil }); err != nil {
				continue // docker build refuses such a --mount and says why
			}
			if !run.PrependShell || len(run.CmdLine) == 0 {
				d.runExec(run, tools, pipNoCache)
				continue
			}
			var hd []heredoc
			for _, f := range run.Files {
				hd = append(hd, heredoc{name: f.Name, data: f.Data})
			}
			cs := calls(script(strings.Join(run.CmdLine, " "), hd))
			d.caches(run, cs, pipNoCache)
			trackTools(run, cs, tools)
		}
	}
	d.reportTools(tools, len(d.stages) == 1)
}

// runExec handles RUN ["cmd", "arg"]: the exec form runs no shell, so its
// words are the call.
func (d *dockerfile) runExec(run *instructions.RunCommand, tools map[string]installed, pipNoCache bool) {
	if run.PrependShell || len(run.CmdLine) == 0 {
		return
	}
	cs := []call{call(run.CmdLine)}
	if shells[path.Base(run.CmdLine[0])] && len(run.CmdLine) >= 3 && run.CmdLine[1] == "-c" {
		cs = calls(run.CmdLine[2])
	}
	d.caches(run, cs, pipNoCache)
	trackTools(run, cs, tools)
}

// caches: GL1010 apt, GL1011 apk, GL1012 pip, GL1013 yum/dnf/zypper.
func (d *dockerfile) caches(run *instructions.RunCommand, cs []call, pipNoCache bool) {
	var aptDone, apkDone, pipDone, rpmDone bool
	for _, c := range cs {
		switch name := c.name(); {
		case (name == "apt-get" || name == "apt") && c.sub() == "install" && !aptDone:
			if !removes(cs, "/var/lib/apt/lists") && !cacheMounted(run, "/var/lib/apt/lists") {
				d.report("GL1010", run.Location(), fmt.Sprintf("%s install without rm -rf /var/lib/apt/lists/* in the same RUN: the package lists stay in this layer", name))
				aptDone = true
			}
		case name == "apk" && c.sub() == "add" && !apkDone:
			if !c.has("--no-cache") && !removes(cs, "/var/cache/apk") && !cacheMounted(run, "/var/cache/apk", "/etc/apk/cache") {
				d.report("GL1011", run.Location(), "apk add without --no-cache: the package index stays in /var/cache/apk in this layer")
				apkDone = true
			}
		case pipInstall(c) && !pipDone:
			if !c.has("--no-cache-dir") && !pipNoCache && !removes(cs, "/root/.cache") && !cacheMounted(run, "/root/.cache/pip") {
				d.report("GL1012", run.Location(), "pip install without --no-cache-dir: the downloaded packages stay in /root/.cache/pip in this layer")
				pipDone = true
			}
		case (name == "yum" || name == "dnf" || name == "microdnf" || name == "zypper") && !rpmDone:
			sub := c.sub()
			if sub != "install" && sub != "in" && sub != "update" && sub != "upgrade" {
				continue
			}
			if !rpmCleaned(cs, name) && !removes(cs, "/var/cache/"+rpmCacheDir(name)) && !cacheMounted(run, "/var/cache/"+rpmCacheDir(name)) {
				clean := name + " clean all"
				if name == "zypper" {
					clean = "zypper clean"
				}
				d.report("GL1013", run.Location(), fmt.Sprintf("%s %s without %s in the same RUN: the package cache stays in this layer", name, sub, clean))
				rpmDone = true
			}
		}
	}
}

func pipInstall(c call) bool {
	name := c.name()
	if strings.HasPrefix(name, "pip") && c.sub() == "install" {
		return true
	}
	// python -m pip install, python3.12 -m pip install
	if strings.HasPrefix(name, "python") {
		for i := 1; i+2 < len(c); i++ {
			if c[i] == "-m" && c[i+1] == "pip" && c[i+2] == "install" {
				return true
			}
		}
	}
	return false
}

func rpmCacheDir(pm string) string {
	switch pm {
	case "zypper":
		return "zypp"
	case "microdnf":
		return "dnf"
	}
	return pm
}

func rpmCleaned(cs []call, pm string) bool {
	for _, c := range cs {
		if c.name() != pm {
			continue
		}
		switch c.sub() {
		case "clean", "cc":
			return true
		}
	}
	return false
}

// trackTools follows build tools through installs and removals.
func trackTools(run *instructions.RunCommand, cs []call, tools map[string]installed) {
	for _, c := range cs {
		name, sub := c.name(), c.sub()
		switch {
		case (name == "apt-get" || name == "apt") && sub == "install",
			(name == "yum" || name == "dnf" || name == "microdnf") && sub == "install",
			name == "zypper" && (sub == "install" || sub == "in"):
			for _, p := range c.operands("-o", "-t", "--target-release") {
				if t, ok := buildTool(p); ok {
					tools[t] = installed{run: run}
				}
			}
		case name == "apk" && sub == "add":
			virtual := c.flagValue("--virtual", "-t")
			for _, p := range c.operands("--virtual", "-t", "--repository", "-X", "--root", "-p") {
				if t, ok := buildTool(p); ok {
					tools[t] = installed{run: run, virtual: virtual}
				}
			}
		case (name == "apt-get" || name == "apt") && (sub == "remove" || sub == "purge" || sub == "autoremove"),
			(name == "yum" || name == "dnf" || name == "microdnf") && (sub == "remove" || sub == "erase" || sub == "autoremove"),
			name == "zypper" && (sub == "remove" || sub == "rm"),
			name == "apk" && sub == "del":
			for _, p := range c.operands() {
				for t, in := range tools {
					if strings.TrimRight(p, "*") == t || (in.virtual != "" && p == in.virtual) || p == t+"*" {
						delete(tools, t)
					}
				}
			}
		}
	}
}

func (d *dockerfile) reportTools(tools map[string]installed, single bool) {
	byRun := map[*instructions.RunCommand][]string{}
	var order []*instructions.RunCommand
	for t, in := range tools {
		if _, ok := byRun[in.run]; !ok {
			order = append(order, in.run)
		}
		byRun[in.run] = append(byRun[in.run], t)
	}
	sort.Slice(order, func(i, j int) bool {
		return order[i].Location()[0].Start.Line < order[j].Location()[0].Start.Line
	})
	for _, run := range order {
		names := byRun[run]
		sort.Strings(names)
		where := "the final image"
		if single {
			where = "this single-stage image"
		}
		d.report("GL1007", run.Location(), fmt.Sprintf("%s installed and never removed: build tools stay in %s, a larger attack surface for whoever gets in", strings.Join(names, ", "), where))
	}
}
