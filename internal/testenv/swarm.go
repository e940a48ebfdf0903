package testenv

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"

	"github.com/gantryhq/gantry/internal/docker"
)

// A test swarm is made on the local Docker engine, which other tests share:
// the engine becomes a swarm manager only while one test holds the lock
// file, and leaves the swarm when the test ends, even when it fails. A
// swarm the tests did not make is never touched.
const (
	swarmLock   = "/tmp/gantry-swarm-test.lock"
	swarmMarker = "/tmp/gantry-swarm-test.node"
	// SwarmPort is the manager's port for cluster traffic; SwarmDataPort
	// the overlay networks' (VXLAN) port: both off Docker's defaults so
	// that nothing else on the machine is disturbed.
	SwarmPort     = 27377
	SwarmDataPort = 27789
	// swarmPool holds the subnets of the test swarm's overlay networks,
	// apart from the worker's veth subnet and from Docker's bridges.
	swarmPool = "10.211.0.0/16"
)

// The worker of a two-node swarm: a second dockerd in its own network
// namespace, joined to the local engine over a veth pair.
const (
	WorkerNetns  = "gantry-swarm-w1"
	workerVethH  = "gsw1h"
	workerVethW  = "gsw1w"
	ManagerAddr  = "10.210.0.1"
	WorkerAddr   = "10.210.0.2"
	workerSubnet = "/24"
	workerRoot   = "/var/lib/gantry-test-swarm-w1"
	workerExec   = "/run/gsw1"
	workerSock   = "/run/gsw1.sock"
	workerPID    = "/run/gsw1.pid"
)

// SwarmCluster is a swarm made for one test.
type SwarmCluster struct {
	// Manager is the local engine, the swarm's only manager; Host is its
	// address for gantry (the environment's swarm:).
	Manager *client.Client
	Host    string
	// Registry is a registry every node pulls from at this same address
	// (127.0.0.1:port; the worker reaches it through a forwarder in its
	// namespace). Images must be pushed there: a swarm pulls.
	Registry string
	// Worker is the second node, or nil on a single-node swarm.
	Worker *Worker
}

// Swarm makes the local engine a single-node swarm for the test
// (advertised on 127.0.0.1) with a registry, and leaves it at the end.
func Swarm(t testing.TB) *SwarmCluster {
	t.Helper()
	return newSwarm(t, false)
}

// SwarmWithWorker makes a two-node swarm: the local engine as manager,
// advertised on the host's end of a veth pair, and a second dockerd in the
// network namespace gantry-swarm-w1 joined as a worker. Needs root,
// iproute2 and nsenter (scripts/ensure-swarm.sh installs them). Everything
// goes when the test ends: both nodes leave, the second engine stops, the
// namespace and the veth pair are deleted.
func SwarmWithWorker(t testing.TB) *SwarmCluster {
	t.Helper()
	return newSwarm(t, true)
}

func newSwarm(t testing.TB, worker bool) *SwarmCluster {
	t.Helper()
	c := Docker(t)
	sc, stop, err := StartSwarm(c, worker, DistributionRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
		forgetRegistryImages(c, sc.Registry)
	})
	return sc
}

// forgetRegistryImages removes the engine's references to images of the
// registry at addr (registry/repo@sha256:…, which the swarm's pulls by
// digest leave behind, one more per run on a new port), never the images
// themselves: an image known only through that registry is left alone.
func forgetRegistryImages(c *client.Client, addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	imgs, err := c.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		return
	}
	for _, img := range imgs {
		var ours []string
		kept := 0
		for _, ref := range append(img.RepoTags, img.RepoDigests...) {
			if strings.HasPrefix(ref, addr+"/") {
				ours = append(ours, ref)
			} else {
				kept++
			}
		}
		if kept == 0 {
			continue // known only through the registry: left as it is
		}
		for _, ref := range ours {
			c.ImageRemove(ctx, ref, image.RemoveOptions{})
		}
	}
}

// StartSwarm makes a test swarm on the engine c (see Swarm and
// SwarmWithWorker) for a program that is not a test, such as a benchmark;
// registry is a registry on 127.0.0.1 the nodes pull from. stop undoes
// everything StartSwarm did, also after it failed halfway.
func StartSwarm(c *client.Client, worker bool, registry string) (sc *SwarmCluster, stop func() error, err error) {
	var undo []func() error
	var once sync.Once
	var stopErr error
	stop = func() error {
		// Once: a signal handler and a deferred call may both stop it.
		once.Do(func() {
			var errs []error
			for i := len(undo) - 1; i >= 0; i-- {
				if err := undo[i](); err != nil {
					errs = append(errs, err)
				}
			}
			stopErr = errors.Join(errs...)
		})
		return stopErr
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	unlock, err := lockSwarm()
	if err != nil {
		return nil, stop, err
	}
	undo = append(undo, func() error { unlock(); return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := leaveStale(c); err != nil {
		return nil, stop, err
	}
	cleanWorker()
	sc = &SwarmCluster{Manager: c, Host: c.DaemonHost(), Registry: registry}
	_, gwMissing := c.NetworkInspect(ctx, "docker_gwbridge", network.InspectOptions{})
	addr, listen := "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", SwarmPort)
	if worker {
		undo = append(undo, func() error { cleanWorker(); return nil })
		if err := makeVeth(); err != nil {
			return nil, stop, fmt.Errorf("a two-node swarm needs a network namespace and a veth pair: %v\n"+
				"Run the tests as root with iproute2 and util-linux (nsenter) installed (`make deps` runs scripts/ensure-swarm.sh)", err)
		}
		addr, listen = ManagerAddr, fmt.Sprintf("%s:%d", ManagerAddr, SwarmPort)
	}
	id, err := c.SwarmInit(ctx, swarm.InitRequest{ListenAddr: listen, AdvertiseAddr: addr, DataPathAddr: addr,
		DataPathPort: SwarmDataPort, DefaultAddrPool: []string{swarmPool}, SubnetSize: 24})
	if err != nil {
		return nil, stop, fmt.Errorf("docker swarm init on the local engine: %w", err)
	}
	os.WriteFile(swarmMarker, []byte(id), 0o644)
	// After the worker's cleanup in undo, so it runs before it: the worker
	// leaves first, then the manager.
	undo = append(undo, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if sc.Worker != nil {
			sc.Worker.leave()
		}
		err := c.SwarmLeave(ctx, true)
		os.Remove(swarmMarker)
		if gwMissing != nil {
			// docker_gwbridge came with this swarm; it goes with it.
			removeGWBridge(c)
		}
		if err != nil {
			return fmt.Errorf("docker swarm leave --force on the local engine: %w", err)
		}
		return nil
	})
	if worker {
		w, err := startWorker(registry)
		if err != nil {
			return nil, stop, err
		}
		sc.Worker = w
		if err := w.join(ctx, c); err != nil {
			return nil, stop, err
		}
	}
	return sc, stop, nil
}

// NoSwarmChanges keeps the engine out of swarm mode changes (init, leave)
// until the test ends, by holding the swarm tests' lock: it waits for a
// swarm test running in another package to end. A test whose containers
// find each other by name needs it: the engine loses the embedded DNS
// records of containers connected while it enters or leaves swarm mode
// (measured: "lookup api on 127.0.0.11:53: no such host" for as long as
// the container lives, in 2 of 3 deploys beside a loop of swarm init and
// leave; none with the swarm left alone).
func NoSwarmChanges(t testing.TB) {
	t.Helper()
	unlock, err := lockSwarm()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
}

// lockSwarm serializes the test swarms of every process on this machine:
// one swarm on the engine at a time.
func lockSwarm() (unlock func(), err error) {
	f, err := os.OpenFile(swarmLock, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("swarm test lock: %w", err)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("another process has held %s for 10 minutes; is a swarm test stuck?", swarmLock)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// leaveStale makes the engine leave a swarm that a killed test run left
// (the marker names its node), and fails when the engine is in a swarm the
// tests did not make.
func leaveStale(c *client.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("docker info: %w", err)
	}
	if info.Swarm.LocalNodeState == swarm.LocalNodeStateInactive {
		return nil
	}
	marker, _ := os.ReadFile(swarmMarker)
	if strings.TrimSpace(string(marker)) != info.Swarm.NodeID {
		return fmt.Errorf("the local Docker engine is already part of a swarm (node %s) that gantry's tests did not make; the swarm tests make their own and leave it at the end, so they will not touch this one.\n"+
			"Leave it (`docker swarm leave --force`) if it is yours to remove, or run the tests on another engine", info.Swarm.NodeID)
	}
	if err := c.SwarmLeave(ctx, true); err != nil {
		return fmt.Errorf("leaving the swarm a killed test run left: docker swarm leave --force: %w", err)
	}
	removeGWBridge(c)
	return nil
}

func removeGWBridge(c *client.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		err := c.NetworkRemove(ctx, "docker_gwbridge")
		if err == nil || strings.Contains(err.Error(), "not found") {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Worker is the second dockerd of a two-node swarm.
type Worker struct {
	Client *client.Client
	// NodeID is its node in the swarm.
	NodeID   string
	registry string
	cmd      *exec.Cmd
	done     chan struct{}
	fwd      net.Listener
	log      string
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// makeVeth makes the namespace and the veth pair: the host's end
// 10.210.0.1, the namespace's 10.210.0.2.
func makeVeth() error {
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("ip (iproute2) is not installed")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		return errors.New("nsenter (util-linux) is not installed")
	}
	steps := [][]string{
		{"netns", "add", WorkerNetns},
		{"link", "add", workerVethH, "type", "veth", "peer", "name", workerVethW},
		{"link", "set", workerVethW, "netns", WorkerNetns},
		{"addr", "add", ManagerAddr + workerSubnet, "dev", workerVethH},
		{"link", "set", workerVethH, "up"},
		{"-n", WorkerNetns, "addr", "add", WorkerAddr + workerSubnet, "dev", workerVethW},
		{"-n", WorkerNetns, "link", "set", workerVethW, "up"},
		{"-n", WorkerNetns, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// cleanWorker removes what a worker left: its dockerd (by its pid file),
// the namespace, the veth pair and its data. It is safe to run when
// nothing is left.
func cleanWorker() {
	if b, err := os.ReadFile(workerPID); err == nil {
		var pid int
		fmt.Sscan(string(b), &pid)
		if pid > 0 && isDockerd(pid) {
			syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 100 && isDockerd(pid); i++ {
				time.Sleep(200 * time.Millisecond)
			}
			if isDockerd(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		os.Remove(workerPID)
	}
	exec.Command("ip", "netns", "del", WorkerNetns).Run()
	exec.Command("ip", "link", "del", workerVethH).Run()
	unmountUnder(workerRoot)
	unmountUnder(workerExec)
	os.RemoveAll(workerRoot)
	os.RemoveAll(workerExec)
	os.Remove(workerSock)
}

func isDockerd(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(b)) == "dockerd"
}

// unmountUnder unmounts what a killed dockerd left mounted under dir,
// deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			mounts = append(mounts, f[1])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
}

// startWorker starts the second dockerd in the namespace (entered with
// nsenter --net: `ip netns exec` hides the cgroup mounts dockerd needs),
// with its own data root, exec root, socket and pid file, no bridge and no
// iptables rules, and a forwarder that makes the test registry answer at
// the same 127.0.0.1 address in the namespace.
func startWorker(registry string) (*Worker, error) {
	for _, d := range []string{workerRoot, workerExec} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	cfg := filepath.Join(workerRoot, "daemon.json")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o600); err != nil {
		return nil, err
	}
	w := &Worker{registry: registry, log: filepath.Join(workerRoot, "dockerd.log")}
	fwd, err := listenInNetns("/var/run/netns/"+WorkerNetns, registry)
	if err != nil {
		return nil, fmt.Errorf("registry forwarder in %s: %w", WorkerNetns, err)
	}
	w.fwd = fwd
	go forward(fwd, registry)
	if err := w.Start(); err != nil {
		fwd.Close()
		return nil, err
	}
	return w, nil
}

// Start starts the worker's dockerd and waits until it answers.
func (w *Worker) Start() error {
	logf, err := os.OpenFile(w.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command("nsenter", "--net=/var/run/netns/"+WorkerNetns, "dockerd",
		"--config-file", filepath.Join(workerRoot, "daemon.json"),
		"--data-root", filepath.Join(workerRoot, "data"), "--exec-root", workerExec,
		"-H", "unix://"+workerSock, "--pidfile", workerPID,
		"--bridge=none", "--iptables=false", "--ip-masq=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start the worker's dockerd: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	w.cmd, w.done = cmd, done
	if w.Client == nil {
		c, err := client.NewClientWithOpts(client.WithHost("unix://"+workerSock), client.WithAPIVersionNegotiation())
		if err != nil {
			return err
		}
		w.Client = c
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := w.Client.Ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("the worker's dockerd exited at start:\n%s", tail(w.log, 30))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the worker's dockerd did not answer within 60s (%v):\n%s", err, tail(w.log, 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops the worker's dockerd (SIGTERM, as a node shutting down), and
// waits for it to exit.
func (w *Worker) Stop() {
	if w.cmd == nil {
		return
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		w.cmd.Process.Kill()
		<-w.done
	}
	w.cmd = nil
}

func (w *Worker) join(ctx context.Context, manager *client.Client) error {
	sw, err := manager.SwarmInspect(ctx)
	if err != nil {
		return fmt.Errorf("swarm inspect: %w", err)
	}
	err = w.Client.SwarmJoin(ctx, swarm.JoinRequest{
		ListenAddr: fmt.Sprintf("%s:%d", WorkerAddr, SwarmPort), AdvertiseAddr: WorkerAddr, DataPathAddr: WorkerAddr,
		RemoteAddrs: []string{fmt.Sprintf("%s:%d", ManagerAddr, SwarmPort)}, JoinToken: sw.JoinTokens.Worker,
	})
	if err != nil {
		return fmt.Errorf("docker swarm join from %s: %w\n%s", WorkerNetns, err, tail(w.log, 20))
	}
	info, err := w.Client.Info(ctx)
	if err != nil {
		return err
	}
	w.NodeID = info.Swarm.NodeID
	for ctx.Err() == nil {
		n, _, err := manager.NodeInspectWithRaw(ctx, w.NodeID)
		if err == nil && n.Status.State == swarm.NodeStateReady {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the worker did not become ready in the swarm: %w", ctx.Err())
}

func (w *Worker) leave() {
	if w.cmd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		w.Client.SwarmLeave(ctx, true)
		cancel()
	}
	w.Stop()
	if w.fwd != nil {
		w.fwd.Close()
	}
	w.Client.Close()
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// listenInNetns listens on addr inside the network namespace at nsPath:
// the socket is made by a thread that entered the namespace, and stays
// there; the thread ends with its goroutine.
func listenInNetns(nsPath, addr string) (net.Listener, error) {
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		// No UnlockOSThread: a thread in another namespace must not run
		// other goroutines; it exits with this one.
		f, err := os.Open(nsPath)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns %s: %w", nsPath, err)}
			return
		}
		l, err := net.Listen("tcp", addr)
		ch <- result{l, err}
	}()
	r := <-ch
	return r.l, r.err
}

// forward copies every connection l accepts to addr, until l closes.
func forward(l net.Listener, addr string) {
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return
			}
			defer out.Close()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(out, in)
				out.(*net.TCPConn).CloseWrite()
			}()
			io.Copy(in, out)
			in.(*net.TCPConn).CloseWrite()
			wg.Wait()
		}()
	}
}

// PushImage tags a local image as registry/repo:tag, pushes it, and
// returns the reference. The local tag is removed when the test ends.
func PushImage(t testing.TB, c *client.Client, src, registry, repoTag string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref := registry + "/" + repoTag
	if err := c.ImageTag(ctx, src, ref); err != nil {
		t.Fatalf("docker tag %s %s: %v", src, ref, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c.ImageRemove(ctx, ref, image.RemoveOptions{})
	})
	auth, _ := json.Marshal(map[string]string{})
	rc, err := c.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: encodeAuth(auth)})
	if err != nil {
		t.Fatalf("docker push %s: %v", ref, err)
	}
	err = docker.DrainStream(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("docker push %s: %v", ref, err)
	}
	return ref
}

func encodeAuth(b []byte) string { return base64.URLEncoding.EncodeToString(b) }
