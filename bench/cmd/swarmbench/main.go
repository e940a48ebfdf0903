// Command swarmbench times gantry on a real two-node Docker Swarm (the
// local engine and a second dockerd in a network namespace, as the tests
// make it) against what a user would run instead, side by side in one run:
//
//   - rolling 10 replicas to a new release: gantry deploy against docker
//     stack deploy --detach=false (which waits for the services to
//     converge), the same compose file and update_config for both;
//   - from a failed service to the whole release rolled back (gantry's
//     rollback_seconds: every service of the release back to the previous
//     release's spec) against docker service rollback of that one service.
//
// Goals: the rollout within 1.1x of Swarm's own, the whole release back
// within 2x of Swarm's single-service rollback. It cleans up after itself:
// the swarm is left, the second engine stopped, the namespace deleted.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/testenv"
)

func main() {
	gantry := flag.String("gantry", "bin/gantry", "the gantry binary")
	rounds := flag.Int("rounds", 3, "rounds of each measurement")
	replicas := flag.Int("replicas", 10, "replicas of the rolled service")
	good := flag.String("image", "gantry-example/app:1.0.0", "a healthy image")
	good2 := flag.String("image2", "gantry-example/app:1.1.0", "another healthy image (the new release)")
	bad := flag.String("bad-image", "gantry-example/app:2.0.0-unhealthy", "an image whose healthcheck fails")
	flag.Parse()
	if err := run(*gantry, *rounds, *replicas, *good, *good2, *bad); err != nil {
		fmt.Fprintln(os.Stderr, "swarmbench:", err)
		os.Exit(1)
	}
}

type bench struct {
	gantry string
	dir    string
	c      *client.Client
	host   string
	images map[string]string // good, good2, bad -> pushed references
	seq    int
}

func run(gantry string, rounds, replicas int, good, good2, bad string) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	abs, err := filepath.Abs(gantry)
	if err != nil {
		return err
	}
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "gantry-swarmbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	reg, err := registry.Start(ctx, registry.ServeOptions{Options: registry.Options{Root: filepath.Join(dir, "registry"), Immutable: []string{}}, Addr: "127.0.0.1:27500"})
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	defer reg.Stop()
	b := &bench{gantry: abs, dir: dir, c: c, images: map[string]string{}}
	for key, src := range map[string]string{"good": good, "good2": good2, "bad": bad} {
		ref, err := push(ctx, c, src, reg.Addr+"/bench/app:"+key)
		if err != nil {
			return err
		}
		b.images[key] = ref
	}
	fmt.Println("swarmbench: making a two-node swarm (the local engine + a dockerd in network namespace " + testenv.WorkerNetns + ")")
	sc, stop, err := testenv.StartSwarm(c, true, reg.Addr)
	if err != nil {
		return err
	}
	defer func() {
		if err := stop(); err != nil {
			fmt.Fprintln(os.Stderr, "swarmbench: cleanup:", err)
		}
	}()
	b.host = sc.Host
	go func() { <-ctx.Done(); stop() }()

	rollout, err := b.rollout(ctx, rounds, replicas)
	if err != nil {
		return err
	}
	rollback, err := b.rollback(ctx, rounds, replicas)
	if err != nil {
		return err
	}
	report("swarm rollout of "+fmt.Sprint(replicas)+" replicas on 2 nodes", "gantry deploy", "docker stack deploy --detach=false", rollout, 1.1)
	report("swarm: a failed service to the release rolled back", "gantry (every service)", "docker service rollback (one service)", rollback, 2.0)
	return nil
}

// pair is one round: gantry's time and the peer's.
type pair struct{ gantry, peer time.Duration }

func report(what, g, peer string, ps []pair, goal float64) {
	var gs, pe, ratios []float64
	for _, p := range ps {
		gs = append(gs, p.gantry.Seconds())
		pe = append(pe, p.peer.Seconds())
		ratios = append(ratios, p.gantry.Seconds()/p.peer.Seconds())
	}
	r := median(ratios)
	verdict := "ok"
	if r > goal {
		verdict = "MISSED"
	}
	fmt.Printf("%s: %s %.1fs, %s %.1fs (medians of %d): ratio %.2f (goal <= %.1f) %s\n",
		what, g, median(gs), peer, median(pe), len(ps), r, goal, verdict)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

const updateConfig = `      update_config: { parallelism: 2, monitor: 2s, order: start-first, failure_action: rollback }
      rollback_config: { parallelism: 2, monitor: 2s, order: start-first, failure_action: continue }
`

// healthcheck is the example app's own check with room for a busy machine:
// the image's 1s timeout fails healthy tasks when the machine is loaded.
const healthcheck = `    healthcheck: { test: [CMD, /app, check], interval: 1s, timeout: 3s, retries: 3 }
`

// compose is the file both tools deploy: web with replicas, and with api
// a second service that depends on it.
func compose(replicas int, web, api string) string {
	s := fmt.Sprintf("services:\n  web:\n    image: %s\n%s    deploy:\n      replicas: %d\n%s", web, healthcheck, replicas, updateConfig)
	if api != "" {
		s += fmt.Sprintf("  api:\n    image: %s\n%s    depends_on: [web]\n    deploy:\n      replicas: 2\n%s", api, healthcheck, updateConfig)
	}
	return s
}

// converged checks that Swarm finished updating a service to image (a
// docker stack deploy that Swarm rolled back still exits 0).
func (b *bench) converged(ctx context.Context, service, image string) error {
	s, _, err := b.c.ServiceInspectWithRaw(ctx, service, swarm.ServiceInspectOptions{})
	if err != nil {
		return err
	}
	if got := s.Spec.TaskTemplate.ContainerSpec.Image; !strings.HasPrefix(got, image+"@") && got != image {
		return &swarmFailure{fmt.Sprintf("%s runs %s after the deploy, not %s (Swarm rolled it back: %+v)", service, got, image, s.UpdateStatus)}
	}
	if u := s.UpdateStatus; u != nil && u.State != swarm.UpdateStateCompleted {
		return &swarmFailure{fmt.Sprintf("%s: update %s: %s", service, u.State, u.Message)}
	}
	return nil
}

// project writes a gantry project whose environment env runs on the swarm.
func (b *bench) project(name, composeYAML string) (string, error) {
	d := filepath.Join(b.dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	y := fmt.Sprintf("project: gbench-%s\ncompose: compose.yaml\nenvironments:\n  bench:\n    swarm: %s\n    health: { window: 5m, min_healthy: 2s }\n", name, b.host)
	if err := os.WriteFile(filepath.Join(d, "gantry.yaml"), []byte(y), 0o644); err != nil {
		return "", err
	}
	return d, os.WriteFile(filepath.Join(d, "compose.yaml"), []byte(composeYAML), 0o644)
}

// gantryDeploy deploys a release and returns gantry's result.
func (b *bench) gantryDeploy(ctx context.Context, dir, release string, images map[string]string) (map[string]any, time.Duration, error) {
	args := []string{"--file", filepath.Join(dir, "gantry.yaml"), "--output", "json", "deploy", "bench", "--release", release}
	for svc, ref := range images {
		args = append(args, "--image", svc+"="+ref)
	}
	cmd := exec.CommandContext(ctx, b.gantry, args...)
	cmd.Stderr = nil
	start := time.Now()
	out, err := cmd.Output()
	took := time.Since(start)
	var res map[string]any
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		return nil, took, fmt.Errorf("gantry deploy %s: %v: %s", release, err, out)
	}
	return res, took, nil
}

// stackDeploy runs docker stack deploy of a compose file and waits for
// the services to converge.
func (b *bench) stackDeploy(ctx context.Context, stack, composeYAML string) (time.Duration, error) {
	f := filepath.Join(b.dir, stack+".yaml")
	if err := os.WriteFile(f, []byte(composeYAML), 0o644); err != nil {
		return 0, err
	}
	return b.docker(ctx, "stack", "deploy", "--detach=false", "-q", "-c", f, stack)
}

func (b *bench) docker(ctx context.Context, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return took, nil
}

func (b *bench) rollout(ctx context.Context, rounds, replicas int) ([]pair, error) {
	dir, err := b.project("rollout", compose(replicas, "placeholder", ""))
	if err != nil {
		return nil, err
	}
	const stack = "gbench-stack-rollout"
	defer b.docker(context.Background(), "stack", "rm", stack)
	imgs := []string{b.images["good"], b.images["good2"]}
	if _, _, err := b.gantryDeploy(ctx, dir, "r0", map[string]string{"web": imgs[0]}); err != nil {
		return nil, err
	}
	if _, err := b.stackDeploy(ctx, stack, compose(replicas, imgs[0], "")); err != nil {
		return nil, err
	}
	var ps []pair
	retries := 0
	for i := 1; i <= rounds; i++ {
		img := imgs[i%2]
		var p pair
		gantryRun := func() error {
			res, took, err := b.gantryDeploy(ctx, dir, fmt.Sprintf("r%d", i), map[string]string{"web": img})
			if err != nil {
				return err
			}
			if res["state"] != "succeeded" {
				return &swarmFailure{fmt.Sprintf("gantry deploy r%d: %v: %v", i, res["state"], res["reason"])}
			}
			p.gantry = took
			return nil
		}
		peerRun := func() error {
			took, err := b.stackDeploy(ctx, stack, compose(replicas, img, ""))
			p.peer = took
			if err != nil && ctx.Err() == nil {
				return &swarmFailure{err.Error()}
			}
			if err != nil {
				return err
			}
			return b.converged(ctx, stack+"_web", img)
		}
		// Alternate who goes first, so that neither always meets a warmer machine.
		first, second := gantryRun, peerRun
		if i%2 == 0 {
			first, second = peerRun, gantryRun
		}
		err := first()
		if err == nil {
			err = second()
		}
		var flake *swarmFailure
		if errors.As(err, &flake) && retries < 3 {
			// A task Swarm could not start (a libnetwork race on a busy
			// machine) fails a round for either tool alike: measure it again.
			retries++
			fmt.Printf("  rollout round %d again: %v\n", i, err)
			i--
			continue
		}
		if err != nil {
			return nil, err
		}
		fmt.Printf("  rollout round %d: gantry %.1fs (Swarm's update %.1fs), docker stack deploy %.1fs (Swarm's update %.1fs)\n", i,
			p.gantry.Seconds(), b.updateTime(ctx, "gbench-rollout-bench_web").Seconds(), p.peer.Seconds(), b.updateTime(ctx, stack+"_web").Seconds())
		ps = append(ps, p)
	}
	return ps, nil
}

func (b *bench) rollback(ctx context.Context, rounds, replicas int) ([]pair, error) {
	dir, err := b.project("rollback", compose(replicas, "placeholder", "placeholder"))
	if err != nil {
		return nil, err
	}
	const stack = "gbench-stack-rollback"
	defer b.docker(context.Background(), "stack", "rm", stack)
	good, good2, bad := b.images["good"], b.images["good2"], b.images["bad"]
	var ps []pair
	retries := 0
	for i := 1; i <= rounds; i++ {
		p, err := b.rollbackRound(ctx, dir, stack, i, replicas, good, good2, bad)
		var flake *swarmFailure
		if errors.As(err, &flake) && retries < 3 {
			retries++
			fmt.Printf("  rollback round %d again: %v\n", i, err)
			i--
			continue
		}
		if err != nil {
			return nil, err
		}
		fmt.Printf("  rollback round %d: gantry %.1fs (web and api), docker service rollback %.1fs (web)\n", i, p.gantry.Seconds(), p.peer.Seconds())
		ps = append(ps, p)
	}
	return ps, nil
}

// rollbackRound is one round of the rollback measurement, release names
// numbered by the round (and the retry).
func (b *bench) rollbackRound(ctx context.Context, dir, stack string, i, replicas int, good, good2, bad string) (pair, error) {
	var p pair
	b.seq++
	n := b.seq
	{
		// gantry: a good release, then one whose api fails after web rolled
		// out; every service goes back.
		res, _, err := b.gantryDeploy(ctx, dir, fmt.Sprintf("good%d", n), map[string]string{"web": good, "api": good})
		if err != nil {
			return p, err
		}
		if res["state"] != "succeeded" {
			return p, &swarmFailure{fmt.Sprintf("gantry deploy good%d: %v: %v", n, res["state"], res["reason"])}
		}
		res, _, err = b.gantryDeploy(ctx, dir, fmt.Sprintf("bad%d", n), map[string]string{"web": good2, "api": bad})
		if err != nil {
			return p, err
		}
		if res["state"] != "rolled_back" {
			return p, &swarmFailure{fmt.Sprintf("gantry deploy bad%d ended %v: %v", n, res["state"], res["reason"])}
		}
		if f, _ := res["failure"].(map[string]any); f == nil || f["service"] != "api" {
			return p, &swarmFailure{fmt.Sprintf("gantry deploy bad%d failed on %v, not on api: %v", n, res["failure"], res["reason"])}
		}
		secs, _ := res["rollback_seconds"].(float64)
		p.gantry = time.Duration(secs * float64(time.Second))
	}
	// docker: the same release, web updated, then rolled back by hand.
	for _, web := range []string{good, good2} {
		if _, err := b.stackDeploy(ctx, stack, compose(replicas, web, good)); err != nil {
			return p, &swarmFailure{err.Error()}
		}
		if err := b.converged(ctx, stack+"_web", web); err != nil {
			return p, err
		}
	}
	took, err := b.docker(ctx, "service", "rollback", "-q", stack+"_web")
	if err != nil {
		return p, &swarmFailure{err.Error()}
	}
	p.peer = took
	s, _, err := b.c.ServiceInspectWithRaw(ctx, stack+"_web", swarm.ServiceInspectOptions{})
	if err != nil {
		return p, err
	}
	if u := s.UpdateStatus; u == nil || u.State != swarm.UpdateStateRollbackCompleted || !strings.HasPrefix(s.Spec.TaskTemplate.ContainerSpec.Image, good+"@") {
		return p, &swarmFailure{fmt.Sprintf("docker service rollback left %s at %s (%+v)", stack+"_web", s.Spec.TaskTemplate.ContainerSpec.Image, s.UpdateStatus)}
	}
	return p, nil
}

// updateTime is how long Swarm's last update of a service took, from its
// own update status.
func (b *bench) updateTime(ctx context.Context, service string) time.Duration {
	s, _, err := b.c.ServiceInspectWithRaw(ctx, service, swarm.ServiceInspectOptions{})
	if err != nil || s.UpdateStatus == nil || s.UpdateStatus.StartedAt == nil || s.UpdateStatus.CompletedAt == nil {
		return 0
	}
	return s.UpdateStatus.CompletedAt.Sub(*s.UpdateStatus.StartedAt)
}

// swarmFailure is a round that failed because Swarm failed a task.
type swarmFailure struct{ msg string }

func (f *swarmFailure) Error() string { return f.msg }

// push tags src as ref and pushes it.
func push(ctx context.Context, c *client.Client, src, ref string) (string, error) {
	if err := c.ImageTag(ctx, src, ref); err != nil {
		return "", fmt.Errorf("docker tag %s: %w (examples/build.sh --all builds the example images)", src, err)
	}
	rc, err := c.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: base64.URLEncoding.EncodeToString([]byte("{}"))})
	if err != nil {
		return "", fmt.Errorf("docker push %s: %w", ref, err)
	}
	defer rc.Close()
	if err := docker.DrainStream(rc); err != nil {
		return "", fmt.Errorf("docker push %s: %w", ref, err)
	}
	return ref, nil
}
