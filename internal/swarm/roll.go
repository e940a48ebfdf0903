package swarm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/runtime"
)

// specOf is a service's stored spec, or its translation now when the plan
// was made before it had one (a release deployed to a Docker host).
func specOf(p *runtime.Plan, name string) (swarm.ServiceSpec, error) {
	svc, ok := p.Services[name]
	if !ok {
		return swarm.ServiceSpec{}, fmt.Errorf("release %s has no service %s", p.Release, name)
	}
	if len(svc.Spec) == 0 {
		return Spec(p, name, runtime.Rollout{})
	}
	var spec swarm.ServiceSpec
	if err := json.Unmarshal(svc.Spec, &spec); err != nil {
		return spec, fmt.Errorf("service %s of release %s: decode its stored swarm spec: %w", name, p.Release, err)
	}
	return spec, nil
}

// expectation is what the change Roll sent makes Swarm do.
type expectation int

const (
	// expectTasks: no rolling update (a new service, or only the
	// replica count changed); the tasks must converge.
	expectTasks expectation = iota
	// expectUpdate: a rolling update to the spec; Swarm rolling it back
	// means it failed.
	expectUpdate
	// expectRollback: Swarm rolls the service back to the spec (its
	// PreviousSpec, or one it is rolling back to already).
	expectRollback
)

// Roll brings a service to its spec in p, through Swarm's own rollout, and
// follows it: service events wake it on every update state change, and
// the tasks are read every poll interval (the Engine API has no task
// events). It returns as soon as Swarm starts rolling a failed update back,
// so that the engine can roll every other service back at the same time.
func (r *Runtime) Roll(ctx context.Context, p *runtime.Plan, name string, opts runtime.RollOptions) (runtime.RollResult, error) {
	progress := opts.Progress
	if progress == nil {
		progress = func(string, string) {}
	}
	spec, err := specOf(p, name)
	if err != nil {
		return runtime.RollResult{}, err
	}
	stamp(&spec, p.ID)
	if err := r.resolveRefs(ctx, &spec); err != nil {
		return runtime.RollResult{}, err
	}
	auth := ""
	if r.auth != nil && spec.TaskTemplate.ContainerSpec != nil {
		if auth, err = r.auth(spec.TaskTemplate.ContainerSpec.Image); err != nil {
			return runtime.RollResult{}, fmt.Errorf("credentials to pull %s: %w", spec.TaskTemplate.ContainerSpec.Image, err)
		}
	}
	// Subscribe before changing anything, so that no state is missed.
	evCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, evErrs := r.c.Events(evCtx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ServiceEventType)), filters.Arg("service", spec.Name))})

	f := &follower{r: r, plan: p, name: name, spec: spec, progress: progress, restore: opts.Restore}
	cur, _, err := r.c.ServiceInspectWithRaw(ctx, spec.Name, swarm.ServiceInspectOptions{})
	switch {
	case errdefs.IsNotFound(err):
		progress("creating", spec.Name)
		resp, err := r.c.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{EncodedRegistryAuth: auth})
		if err != nil {
			return runtime.RollResult{}, fmt.Errorf("create service %s: %w", spec.Name, err)
		}
		f.id, f.expect = resp.ID, expectTasks
	case err != nil:
		return runtime.RollResult{}, fmt.Errorf("inspect service %s: %w", spec.Name, err)
	case cur.Spec.Labels[LabelSpec] == spec.Labels[LabelSpec]:
		// Already the spec: Swarm may be rolling back to it, or an update
		// to it was interrupted. Follow what runs.
		f.id, f.expect = cur.ID, expectTasks
		if st := cur.UpdateStatus; st != nil {
			switch st.State {
			case swarm.UpdateStateRollbackStarted, swarm.UpdateStateRollbackCompleted:
				f.expect = expectRollback
			case swarm.UpdateStateUpdating:
				f.expect = expectUpdate
			case swarm.UpdateStatePaused, swarm.UpdateStateRollbackPaused:
				if err := f.resume(ctx, cur, auth); err != nil {
					return runtime.RollResult{}, err
				}
			}
		}
	case cur.PreviousSpec != nil && cur.PreviousSpec.Labels[LabelSpec] == spec.Labels[LabelSpec]:
		// Swarm's own rollback returns to exactly this spec, with the
		// service's rollback_config.
		progress("rolling back", "to "+p.Release)
		if _, err := r.c.ServiceUpdate(ctx, cur.ID, cur.Version, cur.Spec, swarm.ServiceUpdateOptions{Rollback: "previous", EncodedRegistryAuth: auth}); err != nil {
			return runtime.RollResult{}, fmt.Errorf("roll service %s back: %w", spec.Name, err)
		}
		f.id, f.expect = cur.ID, expectRollback
	default:
		progress("updating", spec.Name)
		if opts.Restore && spec.UpdateConfig != nil {
			// On the way back, a failed task must not make Swarm roll
			// back to the release that failed: it is started again.
			spec.UpdateConfig.FailureAction = swarm.UpdateFailureActionContinue
		}
		if _, err := r.c.ServiceUpdate(ctx, cur.ID, cur.Version, spec, swarm.ServiceUpdateOptions{EncodedRegistryAuth: auth}); err != nil {
			return runtime.RollResult{}, fmt.Errorf("update service %s: %w", spec.Name, err)
		}
		f.id, f.expect = cur.ID, expectTasks
		// A job runs again with its new spec; it has no rolling update.
		job := spec.Mode.ReplicatedJob != nil || spec.Mode.GlobalJob != nil
		if cur.Spec.Labels[LabelTasks] != spec.Labels[LabelTasks] && !job {
			f.expect = expectUpdate
		}
	}
	tick := time.NewTicker(r.poll)
	defer tick.Stop()
	for {
		res, done, err := f.check(ctx, auth)
		if err != nil || done {
			if !res.Healthy && res.Logs == "" {
				res.Logs = r.failedLogs(context.WithoutCancel(ctx), f.failedTask)
			}
			return res, err
		}
		select {
		case <-ctx.Done():
			res := f.last
			res.Healthy = false
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				res.Check = "window"
				res.Reason = fmt.Sprintf("did not converge within the health window: %s", f.summary())
			} else {
				res.Check, res.Reason = "cancelled", "interrupted: "+f.summary()
			}
			res.Logs = r.failedLogs(context.WithoutCancel(ctx), f.failedTask)
			return res, nil
		case <-msgs:
		case err := <-evErrs:
			if err != nil && ctx.Err() == nil {
				// The stream broke: the tasks are still read every poll.
				msgs, evErrs = nil, nil
			}
		case <-tick.C:
		}
	}
}

// follower follows one service's rollout.
type follower struct {
	r        *Runtime
	plan     *runtime.Plan
	name     string
	spec     swarm.ServiceSpec
	id       string
	expect   expectation
	progress func(phase, detail string)

	restore       bool
	resumed       bool
	strandedSince time.Time
	running0      int
	nodesAt       time.Time
	down          map[string]string
	names         map[string]string
	shown         string
	last          runtime.RollResult
	running       int
	desired       int
	failedTask    string
	state         swarm.UpdateState
}

func (f *follower) summary() string {
	s := fmt.Sprintf("%d/%d tasks of release %s running", f.running, f.desired, f.plan.Release)
	if f.state != "" {
		s += ", update " + string(f.state)
	}
	return s
}

// resume restarts a paused update by sending the spec again: any update
// clears Swarm's paused state. gantry never leaves a service paused.
func (f *follower) resume(ctx context.Context, cur swarm.Service, auth string) error {
	f.resumed = true
	f.progress("resuming", "update was "+string(cur.UpdateStatus.State))
	spec := f.spec
	if _, err := f.r.c.ServiceUpdate(ctx, cur.ID, cur.Version, spec, swarm.ServiceUpdateOptions{EncodedRegistryAuth: auth}); err != nil {
		return fmt.Errorf("resume paused service %s: %w", spec.Name, err)
	}
	f.expect = expectUpdate
	return nil
}

// ours says whether a task runs the spec being rolled out.
func (f *follower) ours(t swarm.Task) bool {
	cs := t.Spec.ContainerSpec
	want := f.spec.TaskTemplate.ContainerSpec
	return cs != nil && want != nil && cs.Labels[runtime.LabelDeployment] == want.Labels[runtime.LabelDeployment] && cs.Image == want.Image
}

// check reads the service and its tasks once and decides.
func (f *follower) check(ctx context.Context, auth string) (runtime.RollResult, bool, error) {
	svc, _, err := f.r.c.ServiceInspectWithRaw(ctx, f.id, swarm.ServiceInspectOptions{})
	if err != nil {
		if ctx.Err() != nil {
			return f.last, false, nil
		}
		return f.last, true, fmt.Errorf("inspect service %s: %w", f.spec.Name, err)
	}
	tasks, err := f.r.c.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", f.id))})
	if err != nil {
		if ctx.Err() != nil {
			return f.last, false, nil
		}
		return f.last, true, fmt.Errorf("list tasks of %s: %w", f.spec.Name, err)
	}
	var msg string
	f.state = ""
	if st := svc.UpdateStatus; st != nil {
		f.state, msg = st.State, st.Message
	}
	res := runtime.RollResult{UpdateState: string(f.state)}
	down, err := f.downNodes(ctx)
	if err != nil {
		return f.last, ctx.Err() == nil, err
	}
	// The tasks: how many of ours run, and which failed. A task on a node
	// that is down runs nowhere, whatever its last reported state.
	running, others, completed := 0, 0, 0
	var failed, failedAny []swarm.Task
	stranded := map[string]int{}
	for _, t := range tasks {
		if t.Status.State == swarm.TaskStateFailed || t.Status.State == swarm.TaskStateRejected {
			failedAny = append(failedAny, t)
		}
		if name, ok := down[t.NodeID]; ok {
			if f.ours(t) && !terminal(t.Status.State) {
				stranded[name]++
			}
			continue
		}
		if !f.ours(t) {
			if t.DesiredState == swarm.TaskStateRunning {
				others++
			}
			continue
		}
		switch t.Status.State {
		case swarm.TaskStateRunning:
			if t.DesiredState == swarm.TaskStateRunning {
				running++
			}
		case swarm.TaskStateComplete:
			completed++
		case swarm.TaskStateFailed, swarm.TaskStateRejected:
			failed = append(failed, t)
		}
	}
	newest := func(l []swarm.Task) {
		sort.Slice(l, func(i, j int) bool { return l[i].Status.Timestamp.After(l[j].Status.Timestamp) })
	}
	newest(failed)
	newest(failedAny)
	// The task that made Swarm roll back may be one whose spec Swarm
	// normalized; name the newest failed task of any spec then.
	culprit := failedAny
	if len(failed) > 0 {
		culprit = failed
	}
	// Swarm names the task that stopped an update; it may have merely
	// ended (complete) within the monitor period.
	if m := taskInMessage.FindStringSubmatch(msg); m != nil {
		for _, t := range tasks {
			if t.ID == m[1] {
				culprit = []swarm.Task{t}
			}
		}
	}
	if len(culprit) > 0 {
		f.failedTask = culprit[0].ID
	}
	desired := 0
	job := false
	switch m := svc.Spec.Mode; {
	case m.Replicated != nil && m.Replicated.Replicas != nil:
		desired = int(*m.Replicated.Replicas)
	case m.ReplicatedJob != nil:
		job, desired = true, 1
		if m.ReplicatedJob.TotalCompletions != nil {
			desired = int(*m.ReplicatedJob.TotalCompletions)
		}
	case m.GlobalJob != nil:
		job = true
		desired = max(completed+len(failed), 1)
	default: // global: one task per eligible node
		for _, t := range tasks {
			if t.DesiredState == swarm.TaskStateRunning {
				desired++
			}
		}
		desired -= others
	}
	f.running, f.desired = running, desired
	if job {
		f.running = completed
	}
	if shown := f.summary(); shown != f.shown {
		f.shown = shown
		f.progress(phaseOf(f.state, f.expect), fmt.Sprintf("%d/%d", f.running, desired))
	}
	why := func(head string) string {
		parts := []string{head}
		if msg != "" {
			parts = append(parts, msg)
		}
		if len(culprit) > 0 {
			parts = append(parts, "last failed task: "+taskError(culprit[0], f.names, f.r.unhealthy(ctx, culprit[0]), healthchecked(f.spec)))
		}
		return strings.Join(parts, "; ")
	}
	converged := running == desired && others == 0 && desired > 0 || job && completed >= desired
	// A node lost during an update can leave Swarm's updater waiting for
	// a task there that never starts: the update would hang until the
	// window ends. When it makes no progress for a grace period while
	// such tasks exist, the rollout has failed.
	if len(stranded) == 0 || f.state != swarm.UpdateStateUpdating || running != f.running0 {
		f.strandedSince = time.Time{}
	} else if f.strandedSince.IsZero() {
		f.strandedSince = time.Now()
	}
	f.running0 = running
	f.last = res
	switch {
	case f.state == swarm.UpdateStatePaused || f.state == swarm.UpdateStateRollbackPaused:
		if f.expect != expectUpdate && !f.resumed {
			if err := f.resume(ctx, svc, auth); err != nil {
				return res, true, err
			}
			return res, false, nil
		}
		res.Check, res.Reason = "paused", why("Swarm paused the update of "+f.spec.Name)
		return res, true, nil
	case f.expect == expectUpdate && (f.state == swarm.UpdateStateRollbackStarted || f.state == swarm.UpdateStateRollbackCompleted):
		res.Check, res.Reason = "rollback", why("Swarm rolled the update of "+f.spec.Name+" back")
		return res, true, nil
	case !f.strandedSince.IsZero() && time.Since(f.strandedSince) > strandedGrace:
		var nodes []string
		for n, c := range stranded {
			nodes = append(nodes, fmt.Sprintf("%s (%d tasks)", n, c))
		}
		sort.Strings(nodes)
		res.Check, res.Reason = "node", why(fmt.Sprintf("node %s went down during the update of %s, which cannot finish while its tasks there never start", strings.Join(nodes, ", "), f.spec.Name))
		return res, true, nil
	case f.restore && !converged:
		// On the way back, Swarm starts failed tasks again; the window
		// decides.
		return res, false, nil
	case job && len(failed) > 0:
		res.Check, res.Reason = "task", why(fmt.Sprintf("job %s failed", f.name))
		return res, true, nil
	case f.expect == expectTasks && len(failed) > 0:
		res.Check, res.Reason = "task", why(fmt.Sprintf("a task of %s failed", f.name))
		return res, true, nil
	case f.expect == expectUpdate && f.state != swarm.UpdateStateCompleted:
		return res, false, nil
	case f.expect == expectRollback && f.state == swarm.UpdateStateRollbackStarted:
		return res, false, nil
	case converged:
		res.Healthy, res.Check = true, "converged"
		res.Reason = fmt.Sprintf("%d/%d tasks running", running, desired)
		if job {
			res.Reason = fmt.Sprintf("%d/%d completed", completed, desired)
		}
		return res, true, nil
	}
	return res, false, nil
}

// terminal says whether a task is done, one way or another.
func terminal(s swarm.TaskState) bool {
	switch s {
	case swarm.TaskStateComplete, swarm.TaskStateShutdown, swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateRemove, swarm.TaskStateOrphaned:
		return true
	}
	return false
}

// strandedGrace is how long an update may make no progress while its
// tasks sit on a node that is down, before gantry calls it failed.
const strandedGrace = 10 * time.Second

// downNodes names the swarm's nodes that are not ready, read at most once
// a second.
func (f *follower) downNodes(ctx context.Context) (map[string]string, error) {
	if f.down != nil && time.Since(f.nodesAt) < time.Second {
		return f.down, nil
	}
	nodes, err := f.r.c.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the swarm's nodes: %w", err)
	}
	names := nodeNames(nodes)
	f.names = names
	f.down = map[string]string{}
	for _, n := range nodes {
		if n.Status.State != swarm.NodeStateReady {
			f.down[n.ID] = names[n.ID]
		}
	}
	f.nodesAt = time.Now()
	return f.down, nil
}

var taskInMessage = regexp.MustCompile(`task ([a-z0-9]{25})\b`)

func phaseOf(state swarm.UpdateState, e expectation) string {
	switch {
	case state == swarm.UpdateStateRollbackStarted:
		return "rolling back"
	case state == swarm.UpdateStateUpdating:
		return "updating"
	case e == expectRollback:
		return "rolling back"
	}
	return "converging"
}

// healthchecked says whether a service's tasks have a healthcheck.
func healthchecked(spec swarm.ServiceSpec) bool {
	cs := spec.TaskTemplate.ContainerSpec
	return cs != nil && cs.Healthcheck != nil && len(cs.Healthcheck.Test) > 0 && cs.Healthcheck.Test[0] != "NONE"
}

// unhealthy says how a task's container failed its healthcheck, when the
// container is on the manager's own engine (the Engine API shows no other
// node's containers) and its healthcheck failed; "" otherwise. Swarm stops
// an unhealthy container and reports its task complete (exit code 0 when
// the program stops cleanly), which alone would not say why.
func (r *Runtime) unhealthy(ctx context.Context, t swarm.Task) string {
	cs := t.Status.ContainerStatus
	if cs == nil || cs.ContainerID == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	c, err := r.c.ContainerInspect(ctx, cs.ContainerID)
	if err != nil || c.State == nil || c.State.Health == nil || c.State.Health.Status != "unhealthy" {
		return ""
	}
	return docker.HealthFailure(c.State.Health)
}

// taskError says how a task ended, on which node; unhealthy is how its
// container failed its healthcheck, when that is known, and checked
// whether it has one.
func taskError(t swarm.Task, nodes map[string]string, unhealthy string, checked bool) string {
	node := nodes[t.NodeID]
	if node == "" {
		node = short(t.NodeID)
	}
	s := fmt.Sprintf("%s on %s: ", short(t.ID), node)
	code := -1
	if cs := t.Status.ContainerStatus; cs != nil {
		code = cs.ExitCode
	}
	switch {
	case t.Status.State == swarm.TaskStateComplete && unhealthy != "":
		return s + "unhealthy: " + unhealthy + "; Swarm stopped it before the monitor period was over"
	case t.Status.State == swarm.TaskStateComplete && checked && code == 0:
		// Within the monitor period a task that ended counts as failed.
		return s + "ended with exit code 0 before the monitor period was over; Swarm stops a container that fails its healthcheck this way, so check the service's healthcheck"
	case t.Status.State == swarm.TaskStateComplete:
		return s + fmt.Sprintf("ended with exit code %d before the monitor period was over", code)
	case t.Status.Err != "":
		s += string(t.Status.State) + ": " + t.Status.Err
	default:
		s += string(t.Status.State) + ": " + t.Status.Message
	}
	if code > 0 {
		s += fmt.Sprintf(" (exit code %d)", code)
	}
	return s
}

// failedLogs returns the last lines of a failed task's output, when its
// node still answers.
func (r *Runtime) failedLogs(ctx context.Context, task string) string {
	if task == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rc, err := r.c.TaskLogs(ctx, task, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "20"})
	if err != nil {
		return ""
	}
	defer rc.Close()
	return readLogs(rc)
}

func readLogs(rc io.Reader) string {
	var buf bytes.Buffer
	stdcopy.StdCopy(&buf, &buf, io.LimitReader(rc, 1<<20))
	return trimLines(buf.String())
}

// Logs returns the last lines of a service's tasks' output.
func (r *Runtime) Logs(ctx context.Context, id string, lines int) (string, error) {
	rc, err := r.c.ServiceLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(lines)})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	return readLogs(rc), nil
}
