package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Targets an environment can run on.
const (
	TargetDocker = "docker"
	TargetSwarm  = "swarm"
)

// IsSwarm says whether the environment runs as Docker Swarm services.
func (e *Environment) IsSwarm() bool { return e.Target == TargetSwarm }

// target checks where an environment runs: `swarm: URL` is short for
// `target: swarm` with `host: URL`, and fills both in.
func (v *validator) target(e *Environment) {
	at := func(p ...string) []string { return append([]string{"environments", e.Name}, p...) }
	if e.Swarm != "" {
		switch {
		case e.Host != "":
			v.fail("give the Swarm manager once: `swarm: tcp://manager:2376`, or `target: swarm` with `host:`", at("swarm")...)
		case e.Target != "" && e.Target != TargetSwarm:
			v.fail(fmt.Sprintf("swarm: names a Swarm manager, but target is %q; remove target or set it to swarm", e.Target), at("target")...)
		case !hasAnyPrefix(e.Swarm, "unix://", "tcp://", "ssh://"):
			v.fail(fmt.Sprintf("%q is not a Swarm manager's Docker host; use unix:///var/run/docker.sock, tcp://manager:2376 or ssh://user@manager", e.Swarm), at("swarm")...)
		}
		e.Host, e.Target = e.Swarm, TargetSwarm
	}
	if e.Target == "" {
		e.Target = TargetDocker
	}
	if e.Target != TargetDocker && e.Target != TargetSwarm {
		v.fail(fmt.Sprintf("%q is not a target; use docker (a Docker host) or swarm (Docker Swarm services, see docs/swarm.md)", e.Target), at("target")...)
	}
	if e.IsSwarm() && len(e.Health.Probes) > 0 {
		v.fail("gantry's probes do not run on a swarm yet: Swarm gates each task on its container healthcheck; give the service a `healthcheck:` in the compose file and remove health.probes", at("health", "probes")...)
	}
}

// SwarmProblems lists what Docker Swarm cannot run in a compose model,
// each with what to do instead: a swarm environment refuses them before
// anything changes, where `docker stack deploy` would ignore them with a
// warning or fail halfway.
func SwarmProblems(p *types.Project) error {
	var errs []error
	file := "compose file"
	if len(p.ComposeFiles) > 0 {
		var names []string
		for _, f := range p.ComposeFiles {
			names = append(names, filepath.Base(f))
		}
		file = strings.Join(names, ", ")
	}
	bad := func(field, msg string, args ...any) {
		errs = append(errs, &Error{File: file, Field: field, Msg: fmt.Sprintf(msg, args...)})
	}
	names := p.ServiceNames()
	sort.Strings(names)
	for _, name := range names {
		s := p.Services[name]
		at := "services." + name
		if s.Build != nil && s.Image == "" {
			bad(at+".build", "a swarm's nodes pull images from a registry and never build; give %s an image that `gantry release` pushes (image: in the compose file, or services.%s.image in gantry.yaml)", name, name)
		}
		switch nm := s.NetworkMode; {
		case nm == "":
		case nm == "host" && len(s.Ports) > 0:
			bad(at+".network_mode", "network_mode: host with published ports: a swarm service on the host network cannot publish ports; remove the ports (the service listens on each node's own interfaces) or drop network_mode and publish through Swarm's ingress")
		case nm == "host":
		default:
			bad(at+".network_mode", "network_mode: %s has no Swarm equivalent; attach the service to a network (networks:) and reach the other service by its name", nm)
		}
		for i, port := range s.Ports {
			pat := fmt.Sprintf("%s.ports[%d]", at, i)
			if port.HostIP != "" {
				bad(pat, "%s:%s:%d binds one address, but Swarm publishes a port on every interface of every node; remove %s and put the nodes behind your load balancer, or publish nothing and reach the service by its name on its network", port.HostIP, port.Published, port.Target, port.HostIP)
			}
			if strings.Contains(port.Published, "-") {
				bad(pat, "published range %s: Swarm publishes single ports; list each port", port.Published)
			}
		}
		if s.Privileged {
			bad(at+".privileged", "Swarm services cannot run privileged; grant only the capabilities the service needs with cap_add")
		}
		if len(s.Devices) > 0 {
			bad(at+".devices", "Swarm services cannot map host devices; run this service on a Docker host environment")
		}
		if s.Pid != "" {
			bad(at+".pid", "pid: %s has no Swarm equivalent; remove it", s.Pid)
		}
		if s.Ipc != "" {
			bad(at+".ipc", "ipc: %s has no Swarm equivalent; remove it", s.Ipc)
		}
		if s.ContainerName != "" {
			bad(at+".container_name", "Swarm names each task itself (%s.1.<id>); remove container_name and use the service name %s", name, name)
		}
		if len(s.Links) > 0 {
			bad(at+".links", "links do not exist on a swarm; put both services on one network and use the service name")
		}
		if len(s.VolumesFrom) > 0 {
			bad(at+".volumes_from", "volumes_from does not exist on a swarm; mount the same named volume in both services")
		}
		if s.CgroupParent != "" || s.UserNSMode != "" {
			bad(at, "cgroup_parent and userns_mode have no Swarm equivalent; remove them")
		}
		for i, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind && v.Source != "" && !filepath.IsAbs(v.Source) {
				bad(fmt.Sprintf("%s.volumes[%d]", at, i), "bind mount %s: every node mounts its own path, which must be absolute and exist there", v.Source)
			}
		}
		if s.Deploy != nil && s.Deploy.Mode != "" {
			switch s.Deploy.Mode {
			case "replicated", "global", "replicated-job", "global-job":
			default:
				bad(at+".deploy.mode", "%q is not a Swarm mode; use replicated, global, replicated-job or global-job", s.Deploy.Mode)
			}
		}
	}
	for _, name := range sortedKeys(p.Networks) {
		n := p.Networks[name]
		if bool(n.External) {
			continue
		}
		if n.Driver != "" && n.Driver != "overlay" {
			bad("networks."+name+".driver", "driver %s: a swarm's services share overlay networks; remove driver (gantry creates an overlay network) or set driver: overlay", n.Driver)
		}
	}
	return errors.Join(errs...)
}
