package docker

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/go-connections/nat"

	"github.com/gantryhq/gantry/internal/runtime"
)

func envLabels(p *runtime.Plan) map[string]string {
	return map[string]string{
		runtime.LabelManaged: "true",
		runtime.LabelProject: p.Project,
		runtime.LabelEnv:     p.Env,
	}
}

// Prepare creates the plan's networks and named volumes when they are
// missing. Volumes are never removed by a deploy: data outlives releases.
func (r *Runtime) Prepare(ctx context.Context, p *runtime.Plan) error {
	names := make([]string, 0, len(p.Networks))
	for k := range p.Networks {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, key := range names {
		n := p.Networks[key]
		if _, err := r.c.NetworkInspect(ctx, n.Name, network.InspectOptions{}); err == nil {
			continue
		} else if !errdefs.IsNotFound(err) {
			return fmt.Errorf("network %s: %w", n.Name, err)
		}
		if n.External {
			return fmt.Errorf("network %s is declared external but does not exist on %s; create it (`docker network create %s`) or drop `external: true`", n.Name, r.host, n.Name)
		}
		labels := envLabels(p)
		for k, v := range n.Labels {
			labels[k] = v
		}
		opts := network.CreateOptions{Driver: n.Driver, Internal: n.Internal, Attachable: n.Attachable, Labels: labels, Options: n.DriverOpts, EnableIPv6: n.EnableIPv6}
		if len(n.Ipam.Config) > 0 {
			opts.IPAM = &network.IPAM{Driver: n.Ipam.Driver}
			for _, c := range n.Ipam.Config {
				opts.IPAM.Config = append(opts.IPAM.Config, network.IPAMConfig{Subnet: c.Subnet, Gateway: c.Gateway, IPRange: c.IPRange})
			}
		}
		if _, err := r.c.NetworkCreate(ctx, n.Name, opts); err != nil && !errdefs.IsConflict(err) {
			return fmt.Errorf("create network %s: %w", n.Name, err)
		}
	}
	names = names[:0]
	for k := range p.Volumes {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, key := range names {
		v := p.Volumes[key]
		if _, err := r.c.VolumeInspect(ctx, v.Name); err == nil {
			continue
		} else if !errdefs.IsNotFound(err) {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if v.External {
			return fmt.Errorf("volume %s is declared external but does not exist on %s; create it (`docker volume create %s`) or drop `external: true`", v.Name, r.host, v.Name)
		}
		labels := envLabels(p)
		for k, val := range v.Labels {
			labels[k] = val
		}
		if _, err := r.c.VolumeCreate(ctx, volume.CreateOptions{Name: v.Name, Driver: v.Driver, DriverOpts: v.DriverOpts, Labels: labels}); err != nil {
			return fmt.Errorf("create volume %s: %w", v.Name, err)
		}
	}
	return nil
}

// ContainerName is the name of a plan's container for a service: unique per
// deployment, so that old and new releases can run side by side.
func ContainerName(p *runtime.Plan, service string) string {
	return fmt.Sprintf("%s-%s-d%d", p.ComposeName, service, p.ID)
}

// Create creates the container of a plan's service, not started. When the
// container already exists (a kept release, or a retry after a crash) it is
// returned as is.
func (r *Runtime) Create(ctx context.Context, p *runtime.Plan, service string) (runtime.Container, error) {
	s, ok := p.Services[service]
	if !ok {
		return runtime.Container{}, fmt.Errorf("plan %d has no service %q", p.ID, service)
	}
	name := ContainerName(p, service)
	if c, err := r.Inspect(ctx, name); err == nil {
		// A kept container restarts with the secret files it was
		// created with; only missing ones (a reboot emptied the tmpfs)
		// are written again.
		if _, err := r.writeSecrets(p, s, name, false); err != nil {
			return runtime.Container{}, err
		}
		return c, nil
	}
	dir, err := r.writeSecrets(p, s, name, true)
	if err != nil {
		if dir != "" {
			os.RemoveAll(dir)
		}
		return runtime.Container{}, err
	}
	cfg, hc, nc, extra, err := r.containerSpec(p, s, dir)
	if err == nil {
		var resp container.CreateResponse
		if resp, err = r.c.ContainerCreate(ctx, cfg, hc, nc, nil, name); err != nil {
			err = fmt.Errorf("create container for %s: %w", service, err)
		} else {
			for net, es := range extra {
				if err := r.c.NetworkConnect(ctx, net, resp.ID, es); err != nil {
					r.Remove(context.WithoutCancel(ctx), resp.ID)
					return runtime.Container{}, fmt.Errorf("connect %s to network %s: %w", service, net, err)
				}
			}
			return r.Inspect(ctx, resp.ID)
		}
	} else {
		err = fmt.Errorf("service %s: %w", service, err)
	}
	if dir != "" {
		os.RemoveAll(dir)
	}
	return runtime.Container{}, err
}

// containerSpec translates a compose service into the Engine API's create
// request; extra holds the networks to connect after creation. secretDir
// holds the service's secret files.
func (r *Runtime) containerSpec(p *runtime.Plan, s *runtime.Service, secretDir string) (*container.Config, *container.HostConfig, *network.NetworkingConfig, map[string]*network.EndpointSettings, error) {
	sc := s.Config
	labels := envLabels(p)
	for k, v := range sc.Labels {
		labels[k] = v
	}
	labels[runtime.LabelService] = s.Name
	labels[runtime.LabelRelease] = p.Release
	labels[runtime.LabelDeployment] = strconv.FormatInt(p.ID, 10)
	labels[runtime.LabelImageRef] = s.ImageRef

	cfg := &container.Config{
		Image:        s.ImageID,
		Labels:       labels,
		User:         sc.User,
		WorkingDir:   sc.WorkingDir,
		Hostname:     sc.Hostname,
		Domainname:   sc.DomainName,
		StopSignal:   sc.StopSignal,
		Tty:          sc.Tty,
		OpenStdin:    sc.StdinOpen,
		ExposedPorts: nat.PortSet{},
	}
	if sc.Command != nil {
		cfg.Cmd = []string(sc.Command)
	}
	if sc.Entrypoint != nil {
		cfg.Entrypoint = []string(sc.Entrypoint)
	}
	keys := make([]string, 0, len(sc.Environment))
	for k := range sc.Environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v := sc.Environment[k]; v != nil {
			cfg.Env = append(cfg.Env, k+"="+*v)
		}
	}
	if sc.StopGracePeriod != nil {
		secs := int(time.Duration(*sc.StopGracePeriod).Seconds())
		cfg.StopTimeout = &secs
	}
	if h := sc.HealthCheck; h != nil {
		hc := &container.HealthConfig{Test: []string(h.Test)}
		if h.Disable {
			hc.Test = []string{"NONE"}
		}
		if h.Interval != nil {
			hc.Interval = time.Duration(*h.Interval)
		}
		if h.Timeout != nil {
			hc.Timeout = time.Duration(*h.Timeout)
		}
		if h.StartPeriod != nil {
			hc.StartPeriod = time.Duration(*h.StartPeriod)
		}
		if h.Retries != nil {
			hc.Retries = int(*h.Retries)
		}
		cfg.Healthcheck = hc
	}

	hc := &container.HostConfig{
		ReadonlyRootfs: sc.ReadOnly,
		Privileged:     sc.Privileged,
		CapAdd:         sc.CapAdd,
		CapDrop:        sc.CapDrop,
		SecurityOpt:    sc.SecurityOpt,
		Init:           sc.Init,
		DNS:            sc.DNS,
		DNSSearch:      sc.DNSSearch,
		DNSOptions:     sc.DNSOpts,
		GroupAdd:       sc.GroupAdd,
		PidMode:        container.PidMode(sc.Pid),
		IpcMode:        container.IpcMode(sc.Ipc),
		UsernsMode:     container.UsernsMode(sc.UserNSMode),
		ShmSize:        int64(sc.ShmSize),
		Sysctls:        map[string]string(sc.Sysctls),
		OomScoreAdj:    int(sc.OomScoreAdj),
		PortBindings:   nat.PortMap{},
		Tmpfs:          map[string]string{},
	}
	if len(sc.ExtraHosts) > 0 {
		hc.ExtraHosts = sc.ExtraHosts.AsList(":")
	}
	rp, err := restartPolicy(sc.Restart)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	hc.RestartPolicy = rp
	if sc.Logging != nil {
		hc.LogConfig = container.LogConfig{Type: sc.Logging.Driver, Config: sc.Logging.Options}
	}
	hc.Resources = container.Resources{Memory: int64(sc.MemLimit), NanoCPUs: int64(sc.CPUS * 1e9), CPUShares: sc.CPUShares}
	if sc.PidsLimit != 0 {
		hc.Resources.PidsLimit = &sc.PidsLimit
	}
	if sc.Deploy != nil && sc.Deploy.Resources.Limits != nil {
		l := sc.Deploy.Resources.Limits
		if l.MemoryBytes != 0 {
			hc.Resources.Memory = int64(l.MemoryBytes)
		}
		if l.NanoCPUs != 0 {
			hc.Resources.NanoCPUs = int64(float64(l.NanoCPUs) * 1e9)
		}
		if l.Pids != 0 {
			pids := l.Pids
			hc.Resources.PidsLimit = &pids
		}
	}
	for name, u := range sc.Ulimits {
		soft, hard := u.Soft, u.Hard
		if u.Single != 0 {
			soft, hard = u.Single, u.Single
		}
		hc.Resources.Ulimits = append(hc.Resources.Ulimits, &container.Ulimit{Name: name, Soft: int64(soft), Hard: int64(hard)})
	}

	for _, e := range sc.Expose {
		port, err := nat.NewPort("tcp", e)
		if err == nil {
			cfg.ExposedPorts[port] = struct{}{}
		}
	}
	for _, pc := range sc.Ports {
		proto := pc.Protocol
		if proto == "" {
			proto = "tcp"
		}
		port, err := nat.NewPort(proto, strconv.Itoa(int(pc.Target)))
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("port %d: %w", pc.Target, err)
		}
		cfg.ExposedPorts[port] = struct{}{}
		hc.PortBindings[port] = append(hc.PortBindings[port], nat.PortBinding{HostIP: pc.HostIP, HostPort: pc.Published})
	}

	for _, v := range sc.Volumes {
		m := mount.Mount{Type: mount.Type(v.Type), Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly}
		switch v.Type {
		case types.VolumeTypeVolume:
			if v.Source != "" {
				vol, ok := p.Volumes[v.Source]
				if !ok {
					return nil, nil, nil, nil, fmt.Errorf("volume %q is not declared in the top-level volumes section", v.Source)
				}
				m.Source = vol.Name
			}
			if v.Volume != nil {
				m.VolumeOptions = &mount.VolumeOptions{NoCopy: v.Volume.NoCopy, Subpath: v.Volume.Subpath}
			}
		case types.VolumeTypeBind:
			if v.Bind != nil {
				m.BindOptions = &mount.BindOptions{Propagation: mount.Propagation(v.Bind.Propagation)}
			}
		case types.VolumeTypeTmpfs:
			m.Source = ""
			if v.Tmpfs != nil {
				m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(v.Tmpfs.Size)}
			}
		default:
			return nil, nil, nil, nil, fmt.Errorf("volume type %q is not supported by gantry on Docker; use volume, bind or tmpfs", v.Type)
		}
		hc.Mounts = append(hc.Mounts, m)
	}
	for _, t := range sc.Tmpfs {
		path, opts, _ := strings.Cut(t, ":")
		hc.Tmpfs[path] = opts
	}
	for i, sm := range s.Secrets {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: secretFile(secretDir, i, sm), Target: sm.Target, ReadOnly: true})
	}

	nc := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{}}
	extra := map[string]*network.EndpointSettings{}
	switch {
	case sc.NetworkMode != "":
		if strings.HasPrefix(sc.NetworkMode, "service:") {
			return nil, nil, nil, nil, fmt.Errorf("network_mode %q is not supported yet; put both services on a shared network", sc.NetworkMode)
		}
		hc.NetworkMode = container.NetworkMode(sc.NetworkMode)
	default:
		keys := make([]string, 0, len(sc.Networks))
		for k := range sc.Networks {
			keys = append(keys, k)
		}
		sort.SliceStable(keys, func(i, j int) bool {
			pi, pj := 0, 0
			if n := sc.Networks[keys[i]]; n != nil {
				pi = n.Priority
			}
			if n := sc.Networks[keys[j]]; n != nil {
				pj = n.Priority
			}
			if pi != pj {
				return pi > pj
			}
			return keys[i] < keys[j]
		})
		for i, k := range keys {
			n, ok := p.Networks[k]
			if !ok {
				return nil, nil, nil, nil, fmt.Errorf("network %q is not declared in the top-level networks section", k)
			}
			es := &network.EndpointSettings{Aliases: []string{s.Name}}
			if sn := sc.Networks[k]; sn != nil {
				es.Aliases = append(es.Aliases, sn.Aliases...)
				if sn.Ipv4Address != "" || sn.Ipv6Address != "" {
					es.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: sn.Ipv4Address, IPv6Address: sn.Ipv6Address}
				}
			}
			if i == 0 {
				hc.NetworkMode = container.NetworkMode(n.Name)
				nc.EndpointsConfig[n.Name] = es
			} else {
				extra[n.Name] = es
			}
		}
	}
	return cfg, hc, nc, extra, nil
}

func restartPolicy(s string) (container.RestartPolicy, error) {
	name, max, _ := strings.Cut(s, ":")
	switch name {
	case "", "no":
		return container.RestartPolicy{Name: container.RestartPolicyDisabled}, nil
	case "always":
		return container.RestartPolicy{Name: container.RestartPolicyAlways}, nil
	case "unless-stopped":
		return container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}, nil
	case "on-failure":
		rp := container.RestartPolicy{Name: container.RestartPolicyOnFailure}
		if max != "" {
			n, err := strconv.Atoi(max)
			if err != nil {
				return rp, fmt.Errorf("restart %q: the retry count must be a number", s)
			}
			rp.MaximumRetryCount = n
		}
		return rp, nil
	}
	return container.RestartPolicy{}, fmt.Errorf("restart %q: use no, always, on-failure[:N] or unless-stopped", s)
}
