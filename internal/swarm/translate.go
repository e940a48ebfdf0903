package swarm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/go-units"

	"github.com/gantryhq/gantry/internal/runtime"
)

// DefaultMonitor is how long Swarm watches a new task for failure when the
// environment gives no min_healthy: Swarm's own default.
const DefaultMonitor = 5 * time.Second

// Translate turns every service of p into a Swarm service spec, stored in
// the plan (Service.Spec). Secret and config references carry names only:
// Roll fills in their IDs, which exist only once Prepare made them.
func (r *Runtime) Translate(_ context.Context, p *runtime.Plan, ro runtime.Rollout) error {
	for _, name := range p.Order {
		spec, err := Spec(p, name, ro)
		if err != nil {
			return err
		}
		b, err := json.Marshal(spec)
		if err != nil {
			return fmt.Errorf("service %s: encode its swarm spec: %w", name, err)
		}
		p.Services[name].Spec = b
	}
	return nil
}

func unsupported(service, format string, args ...any) error {
	return fmt.Errorf("%w: service %s: %s", runtime.ErrUnsupported, service, fmt.Sprintf(format, args...))
}

// Spec is the Swarm service spec of a plan's service, labelled with the
// hashes of itself (LabelSpec) and of its task template (LabelTasks).
func Spec(p *runtime.Plan, name string, ro runtime.Rollout) (swarm.ServiceSpec, error) {
	svc := p.Services[name]
	sc := svc.Config
	var deploy types.DeployConfig
	if sc.Deploy != nil {
		deploy = *sc.Deploy
	}
	labels := gantryLabels(p, svc)
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: serviceName(p.ComposeName, name), Labels: merge(deploy.Labels, labels)},
	}
	cs := &swarm.ContainerSpec{
		Image:      svc.ImageID,
		Labels:     merge(sc.Labels, labels),
		Command:    sc.Entrypoint,
		Args:       sc.Command,
		Hostname:   sc.Hostname,
		Env:        environment(sc.Environment),
		Dir:        sc.WorkingDir,
		User:       sc.User,
		Groups:     sc.GroupAdd,
		Init:       sc.Init,
		StopSignal: sc.StopSignal,
		TTY:        sc.Tty,
		OpenStdin:  sc.StdinOpen,
		ReadOnly:   sc.ReadOnly,
		Sysctls:    sc.Sysctls,
		Hosts:      hosts(sc.ExtraHosts),
	}
	if svc.ImageID == "" {
		cs.Image = svc.ImageRef
	}
	if sc.StopGracePeriod != nil {
		d := time.Duration(*sc.StopGracePeriod)
		cs.StopGracePeriod = &d
	}
	if len(sc.CapAdd) > 0 || len(sc.CapDrop) > 0 {
		cs.CapabilityAdd, cs.CapabilityDrop = sc.CapAdd, sc.CapDrop
	}
	if len(sc.DNS) > 0 || len(sc.DNSSearch) > 0 || len(sc.DNSOpts) > 0 {
		cs.DNSConfig = &swarm.DNSConfig{Nameservers: sc.DNS, Search: sc.DNSSearch, Options: sc.DNSOpts}
	}
	for _, k := range slices.Sorted(maps.Keys(sc.Ulimits)) {
		u := sc.Ulimits[k]
		soft, hard := int64(u.Soft), int64(u.Hard)
		if u.Single != 0 {
			soft, hard = int64(u.Single), int64(u.Single)
		}
		cs.Ulimits = append(cs.Ulimits, &units.Ulimit{Name: k, Soft: soft, Hard: hard})
	}
	hc, err := healthcheck(sc.HealthCheck)
	if err != nil {
		return spec, unsupported(name, "%v", err)
	}
	cs.Healthcheck = hc
	if cs.Mounts, err = mounts(p, name); err != nil {
		return spec, err
	}
	if cs.Secrets, err = secretRefs(p, svc); err != nil {
		return spec, err
	}
	if cs.Configs, err = configRefs(p, svc); err != nil {
		return spec, err
	}
	tt := swarm.TaskSpec{ContainerSpec: cs, Resources: resources(sc, deploy.Resources), Placement: placement(deploy.Placement)}
	if tt.RestartPolicy, err = restartPolicy(sc, deploy, svc.Job); err != nil {
		return spec, unsupported(name, "%v", err)
	}
	if sc.Logging != nil && sc.Logging.Driver != "" {
		tt.LogDriver = &swarm.Driver{Name: sc.Logging.Driver, Options: sc.Logging.Options}
	}
	if tt.Networks, err = networks(p, name); err != nil {
		return spec, err
	}
	spec.TaskTemplate = tt
	if spec.Mode, err = mode(sc, deploy, svc.Job); err != nil {
		return spec, unsupported(name, "%v", err)
	}
	if spec.EndpointSpec, err = endpoint(sc, deploy); err != nil {
		return spec, unsupported(name, "%v", err)
	}
	if spec.Mode.Replicated != nil || spec.Mode.Global != nil {
		spec.UpdateConfig, spec.RollbackConfig = rollout(sc, deploy, ro)
	}
	stamp(&spec, p.ID)
	return spec, nil
}

// stamp names the deployment on a spec (the service and its tasks'
// containers) and labels it with the hashes of itself (LabelSpec) and of
// its task template and endpoint (LabelTasks). A plan is translated
// before its deployment is recorded, so Roll stamps it again.
func stamp(spec *swarm.ServiceSpec, deployment int64) {
	id := strconv.FormatInt(deployment, 10)
	spec.Labels[runtime.LabelDeployment] = id
	if cs := spec.TaskTemplate.ContainerSpec; cs != nil {
		cs.Labels[runtime.LabelDeployment] = id
	}
	delete(spec.Labels, LabelSpec)
	delete(spec.Labels, LabelTasks)
	tasks := hashOf(struct {
		T swarm.TaskSpec
		E *swarm.EndpointSpec
	}{spec.TaskTemplate, spec.EndpointSpec})
	all := hashOf(spec)
	spec.Labels[LabelTasks], spec.Labels[LabelSpec] = tasks, all
}

// gantryLabels name the project, environment, service, release and
// deployment on the service and on every task's container.
func gantryLabels(p *runtime.Plan, svc *runtime.Service) map[string]string {
	return map[string]string{
		runtime.LabelManaged:    "true",
		runtime.LabelProject:    p.Project,
		runtime.LabelEnv:        p.Env,
		runtime.LabelService:    svc.Name,
		runtime.LabelRelease:    p.Release,
		runtime.LabelDeployment: strconv.FormatInt(p.ID, 10),
		runtime.LabelImageRef:   svc.ImageRef,
		LabelStack:              p.ComposeName,
	}
}

func merge(user map[string]string, ours map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range user {
		out[k] = v
	}
	for k, v := range ours {
		out[k] = v
	}
	return out
}

func hashOf(v any) string {
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}

func environment(env types.MappingWithEquals) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if v := env[k]; v != nil {
			out = append(out, k+"="+*v)
		}
	}
	return out
}

// hosts writes extra_hosts as /etc/hosts lines, the form Swarm takes.
func hosts(h types.HostsList) []string {
	var out []string
	for _, host := range slices.Sorted(maps.Keys(h)) {
		for _, ip := range h[host] {
			out = append(out, ip+" "+host)
		}
	}
	return out
}

func healthcheck(h *types.HealthCheckConfig) (*container.HealthConfig, error) {
	if h == nil {
		return nil, nil
	}
	if h.Disable {
		return &container.HealthConfig{Test: []string{"NONE"}}, nil
	}
	hc := &container.HealthConfig{Test: h.Test}
	d := func(p *types.Duration) time.Duration {
		if p == nil {
			return 0
		}
		return time.Duration(*p)
	}
	hc.Interval, hc.Timeout, hc.StartPeriod = d(h.Interval), d(h.Timeout), d(h.StartPeriod)
	if h.Retries != nil {
		hc.Retries = int(*h.Retries)
	}
	if h.StartInterval != nil {
		return nil, fmt.Errorf("healthcheck.start_interval needs Docker API 1.44; remove it")
	}
	return hc, nil
}

func mounts(p *runtime.Plan, name string) ([]mount.Mount, error) {
	sc := p.Services[name].Config
	var out []mount.Mount
	for _, v := range sc.Volumes {
		m := mount.Mount{Target: v.Target, ReadOnly: v.ReadOnly}
		switch v.Type {
		case types.VolumeTypeVolume, "":
			m.Type = mount.TypeVolume
			opts := &mount.VolumeOptions{}
			if v.Volume != nil {
				opts.NoCopy = v.Volume.NoCopy
				opts.Subpath = v.Volume.Subpath
			}
			if v.Source != "" {
				vc, ok := p.Volumes[v.Source]
				if !ok {
					return nil, unsupported(name, "volume %q is not declared under the top-level volumes:", v.Source)
				}
				m.Source = v.Source
				if vc.Name != "" {
					m.Source = vc.Name
				}
				if !bool(vc.External) {
					opts.Labels = merge(vc.Labels, map[string]string{
						runtime.LabelManaged: "true", runtime.LabelProject: p.Project, runtime.LabelEnv: p.Env, LabelStack: p.ComposeName,
					})
					if vc.Driver != "" || len(vc.DriverOpts) > 0 {
						opts.DriverConfig = &mount.Driver{Name: vc.Driver, Options: vc.DriverOpts}
					}
				}
			}
			m.VolumeOptions = opts
		case types.VolumeTypeBind:
			m.Type, m.Source = mount.TypeBind, v.Source
			if v.Bind != nil && v.Bind.Propagation != "" {
				m.BindOptions = &mount.BindOptions{Propagation: mount.Propagation(v.Bind.Propagation)}
			}
		case types.VolumeTypeTmpfs:
			m.Type = mount.TypeTmpfs
			if v.Tmpfs != nil {
				m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(v.Tmpfs.Size), Mode: os.FileMode(v.Tmpfs.Mode)}
			}
		default:
			return nil, unsupported(name, "volume type %s cannot be mounted by Swarm; use a named volume, a bind mount or tmpfs", v.Type)
		}
		out = append(out, m)
	}
	for _, t := range sc.Tmpfs {
		target, opts, _ := strings.Cut(t, ":")
		m := mount.Mount{Type: mount.TypeTmpfs, Target: target}
		for _, o := range strings.Split(opts, ",") {
			if size, ok := strings.CutPrefix(o, "size="); ok {
				n, err := units.RAMInBytes(size)
				if err != nil {
					return nil, unsupported(name, "tmpfs %s: size %q: %v", t, size, err)
				}
				m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: n}
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// ObjectName is the content-addressed name of a secret or config on the
// swarm: a new value is a new object, so the tasks of an earlier release
// keep the value they were deployed with. Swarm names are at most 64
// characters.
func ObjectName(composeName, key string, content []byte) string {
	sum := sha256.Sum256(content)
	base := composeName + "_" + key
	if len(base) > 64-13 {
		base = base[:64-13]
	}
	return base + "_" + hex.EncodeToString(sum[:])[:12]
}

// secretContent is a secret's value, which the engine read from its
// source (the plan never holds it).
func secretContent(svc string, m runtime.SecretMount) ([]byte, error) {
	if m.Value == nil {
		why := m.ReadErr
		if why == nil {
			why = errors.New("gantry has not read it")
		}
		return nil, fmt.Errorf("%w: service %s: secret %s (%s): %v", runtime.ErrSecretUnavailable, svc, m.Name, m.Source(), why)
	}
	return m.Value, nil
}

// secretObjectName names a secret's object on the swarm after its keyed
// fingerprint, not its content: a plain hash of a weak password in a name
// would let anyone who lists secrets test guesses.
func secretObjectName(composeName string, m runtime.SecretMount) string {
	return ObjectName(composeName, m.Name, []byte(m.Fingerprint))
}

// fileTarget is a secret's or config's file in the container: Swarm takes
// a name under /run/secrets (secrets) or an absolute path.
func fileTarget(target string) string {
	if rel, ok := strings.CutPrefix(target, "/run/secrets/"); ok {
		return rel
	}
	return target
}

func fileRef(target string, ref *types.FileReferenceConfig) *swarm.SecretReferenceFileTarget {
	f := &swarm.SecretReferenceFileTarget{Name: target, UID: "0", GID: "0", Mode: 0o444}
	if ref != nil {
		if ref.UID != "" {
			f.UID = ref.UID
		}
		if ref.GID != "" {
			f.GID = ref.GID
		}
		if ref.Mode != nil {
			f.Mode = os.FileMode(*ref.Mode)
		}
	}
	return f
}

func secretRefs(p *runtime.Plan, svc *runtime.Service) ([]*swarm.SecretReference, error) {
	var out []*swarm.SecretReference
	for _, m := range svc.Secrets {
		name := m.ExternalName
		if !m.External {
			name = secretObjectName(p.ComposeName, m)
		}
		// The mount carries compose's uid, gid and mode (the stored
		// compose config does not: its mode does not survive JSON).
		f := &swarm.SecretReferenceFileTarget{Name: fileTarget(m.Target), UID: strconv.Itoa(m.UID), GID: strconv.Itoa(m.GID), Mode: os.FileMode(m.Mode)}
		out = append(out, &swarm.SecretReference{File: f, SecretName: name})
	}
	return out, nil
}

func configRefs(p *runtime.Plan, svc *runtime.Service) ([]*swarm.ConfigReference, error) {
	var out []*swarm.ConfigReference
	for _, c := range svc.Config.Configs {
		cf, ok := p.Configs[c.Source]
		if !ok {
			return nil, unsupported(svc.Name, "config %q is not declared under the top-level configs:", c.Source)
		}
		name := cf.Name
		if !cf.External {
			name = ObjectName(p.ComposeName, c.Source, []byte(cf.Content))
		}
		target := c.Target
		if target == "" {
			target = "/" + c.Source
		}
		ref := types.FileReferenceConfig(c)
		f := fileRef(target, &ref)
		out = append(out, &swarm.ConfigReference{
			File:       &swarm.ConfigReferenceFileTarget{Name: f.Name, UID: f.UID, GID: f.GID, Mode: f.Mode},
			ConfigName: name,
		})
	}
	return out, nil
}

func resources(sc types.ServiceConfig, r types.Resources) *swarm.ResourceRequirements {
	out := &swarm.ResourceRequirements{}
	if l := r.Limits; l != nil {
		out.Limits = &swarm.Limit{NanoCPUs: int64(float64(l.NanoCPUs) * 1e9), MemoryBytes: int64(l.MemoryBytes), Pids: l.Pids}
	} else if sc.CPUS > 0 || sc.MemLimit > 0 || sc.PidsLimit > 0 {
		out.Limits = &swarm.Limit{NanoCPUs: int64(float64(sc.CPUS) * 1e9), MemoryBytes: int64(sc.MemLimit), Pids: sc.PidsLimit}
	}
	if res := r.Reservations; res != nil {
		out.Reservations = &swarm.Resources{NanoCPUs: int64(float64(res.NanoCPUs) * 1e9), MemoryBytes: int64(res.MemoryBytes)}
	}
	if out.Limits == nil && out.Reservations == nil {
		return nil
	}
	return out
}

func placement(pl types.Placement) *swarm.Placement {
	out := &swarm.Placement{Constraints: pl.Constraints, MaxReplicas: pl.MaxReplicas}
	for _, p := range pl.Preferences {
		out.Preferences = append(out.Preferences, swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: p.Spread}})
	}
	return out
}

// restartPolicy takes deploy.restart_policy, else translates restart:.
// A job runs once: its failure fails the deployment.
func restartPolicy(sc types.ServiceConfig, d types.DeployConfig, job bool) (*swarm.RestartPolicy, error) {
	if job {
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone}, nil
	}
	if rp := d.RestartPolicy; rp != nil {
		out := &swarm.RestartPolicy{Condition: swarm.RestartPolicyCondition(rp.Condition), MaxAttempts: rp.MaxAttempts}
		switch out.Condition {
		case "", swarm.RestartPolicyConditionAny, swarm.RestartPolicyConditionNone, swarm.RestartPolicyConditionOnFailure:
		default:
			return nil, fmt.Errorf("deploy.restart_policy.condition %q: use none, on-failure or any", rp.Condition)
		}
		if rp.Delay != nil {
			v := time.Duration(*rp.Delay)
			out.Delay = &v
		}
		if rp.Window != nil {
			v := time.Duration(*rp.Window)
			out.Window = &v
		}
		return out, nil
	}
	switch policy, max, _ := strings.Cut(sc.Restart, ":"); policy {
	case "":
		return nil, nil
	case "no":
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone}, nil
	case "always", "unless-stopped":
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny}, nil
	case "on-failure":
		out := &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure}
		if max != "" {
			n, err := strconv.ParseUint(max, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("restart: %s: the retry count must be a number", sc.Restart)
			}
			out.MaxAttempts = &n
		}
		return out, nil
	default:
		return nil, fmt.Errorf("restart: %s: use no, always, unless-stopped or on-failure", sc.Restart)
	}
}

func networks(p *runtime.Plan, name string) ([]swarm.NetworkAttachmentConfig, error) {
	sc := p.Services[name].Config
	if sc.NetworkMode == "host" {
		return []swarm.NetworkAttachmentConfig{{Target: "host"}}, nil
	}
	var out []swarm.NetworkAttachmentConfig
	for _, key := range slices.Sorted(maps.Keys(sc.Networks)) {
		nc, ok := p.Networks[key]
		if !ok {
			return nil, unsupported(name, "network %q is not declared under the top-level networks:", key)
		}
		target := nc.Name
		if target == "" {
			target = p.ComposeName + "_" + key
		}
		att := swarm.NetworkAttachmentConfig{Target: target, Aliases: []string{name}}
		if c := sc.Networks[key]; c != nil {
			att.Aliases = append(att.Aliases, c.Aliases...)
			att.DriverOpts = c.DriverOpts
		}
		out = append(out, att)
	}
	return out, nil
}

func mode(sc types.ServiceConfig, d types.DeployConfig, job bool) (swarm.ServiceMode, error) {
	one := uint64(1)
	replicas := one
	switch {
	case d.Replicas != nil:
		replicas = uint64(*d.Replicas)
	case sc.Scale != nil:
		replicas = uint64(*sc.Scale)
	}
	switch d.Mode {
	case "global":
		return swarm.ServiceMode{Global: &swarm.GlobalService{}}, nil
	case "global-job":
		return swarm.ServiceMode{GlobalJob: &swarm.GlobalJob{}}, nil
	case "replicated-job":
		return swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: &replicas, TotalCompletions: &replicas}}, nil
	case "", "replicated":
		if job {
			return swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: &one, TotalCompletions: &one}}, nil
		}
		return swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}}, nil
	}
	return swarm.ServiceMode{}, fmt.Errorf("deploy.mode %q: use replicated, global, replicated-job or global-job", d.Mode)
}

func endpoint(sc types.ServiceConfig, d types.DeployConfig) (*swarm.EndpointSpec, error) {
	if len(sc.Ports) == 0 && d.EndpointMode == "" {
		return nil, nil
	}
	ep := &swarm.EndpointSpec{Mode: swarm.ResolutionMode(d.EndpointMode)}
	for _, port := range sc.Ports {
		pc := swarm.PortConfig{TargetPort: port.Target, Protocol: swarm.PortConfigProtocol(port.Protocol), PublishMode: swarm.PortConfigPublishModeIngress}
		if pc.Protocol == "" {
			pc.Protocol = swarm.PortConfigProtocolTCP
		}
		if port.Mode == "host" {
			pc.PublishMode = swarm.PortConfigPublishModeHost
		}
		if port.Published != "" {
			n, err := strconv.ParseUint(port.Published, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("published port %q: Swarm publishes single ports", port.Published)
			}
			pc.PublishedPort = uint32(n)
		}
		ep.Ports = append(ep.Ports, pc)
	}
	return ep, nil
}

// rollout is the service's update_config and rollback_config: the compose
// file's deploy.update_config where it says something, gantry's policy
// where it does not, and always failure_action rollback (Swarm's default,
// pause, leaves a failed update frozen), and a rollback that continues
// past a failed task instead of pausing.
func rollout(sc types.ServiceConfig, d types.DeployConfig, ro runtime.Rollout) (*swarm.UpdateConfig, *swarm.UpdateConfig) {
	order := UpdateOrder(sc, ro.Order)
	monitor := ro.Monitor
	if monitor <= 0 {
		monitor = DefaultMonitor
	}
	up := &swarm.UpdateConfig{Parallelism: 1, Order: order, Monitor: monitor}
	if u := d.UpdateConfig; u != nil {
		if u.Parallelism != nil {
			up.Parallelism = *u.Parallelism
		}
		if u.Delay > 0 {
			up.Delay = time.Duration(u.Delay)
		}
		if u.Monitor > 0 {
			up.Monitor = time.Duration(u.Monitor)
		}
		up.MaxFailureRatio = u.MaxFailureRatio
	}
	up.FailureAction = swarm.UpdateFailureActionRollback
	rb := *up
	rb.FailureAction = swarm.UpdateFailureActionContinue
	rb.Delay = 0
	if u := d.RollbackConfig; u != nil {
		if u.Parallelism != nil {
			rb.Parallelism = *u.Parallelism
		}
		if u.Monitor > 0 {
			rb.Monitor = time.Duration(u.Monitor)
		}
		if u.Order != "" {
			rb.Order = u.Order
		}
	}
	return up, &rb
}

// UpdateOrder is a service's update_config order on a swarm: the compose
// file's deploy.update_config.order, else the environment's strategy when
// it names one, else start-first, unless the service publishes a port in
// mode host (two tasks on one node cannot bind it).
func UpdateOrder(sc types.ServiceConfig, strategy string) string {
	switch {
	case sc.Deploy != nil && sc.Deploy.UpdateConfig != nil && sc.Deploy.UpdateConfig.Order != "":
		return sc.Deploy.UpdateConfig.Order
	case strategy == swarm.UpdateOrderStopFirst || strategy == swarm.UpdateOrderStartFirst:
		return strategy
	case hostPorts(sc):
		return swarm.UpdateOrderStopFirst
	}
	return swarm.UpdateOrderStartFirst
}

func hostPorts(sc types.ServiceConfig) bool {
	for _, p := range sc.Ports {
		if p.Mode == "host" && p.Published != "" {
			return true
		}
	}
	return false
}
