package health

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/config"
)

// Prober is one check gantry runs against a container.
type Prober interface {
	Probe(ctx context.Context, t Target) error
	Interval() time.Duration
	String() string
}

// FromConfig builds the prober a gantry.yaml probe describes.
func FromConfig(p config.Probe) Prober {
	base := probe{interval: p.Interval.D(), timeout: p.Timeout.D()}
	switch {
	case p.HTTP != nil:
		return &HTTPProber{probe: base, Port: p.HTTP.Port, Path: p.HTTP.Path, Status: p.HTTP.Status}
	case p.TCP != nil:
		return &TCPProber{probe: base, Port: p.TCP.Port}
	case p.Exec != nil:
		return &ExecProber{probe: base, Command: p.Exec.Command}
	}
	return nil
}

type probe struct {
	interval, timeout time.Duration
}

func (p probe) Interval() time.Duration { return p.interval }

func (p probe) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	t := p.timeout
	if t <= 0 {
		t = config.DefaultProbeTimeout
	}
	return context.WithTimeout(ctx, t)
}

// HTTPProber sends GET Path to the container's Port and expects Status.
type HTTPProber struct {
	probe
	Port   int
	Path   string
	Status int
}

var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func (p *HTTPProber) String() string { return fmt.Sprintf("http GET :%d%s", p.Port, p.Path) }

// Probe runs the check once.
func (p *HTTPProber) Probe(ctx context.Context, t Target) error {
	ctx, cancel := p.ctx(ctx)
	defer cancel()
	addr, err := t.RT.Address(ctx, t.ID, p.Port)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+p.Path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "gantry-health")
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode != p.Status {
		return fmt.Errorf("status %d, want %d: %s", resp.StatusCode, p.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// TCPProber connects to the container's Port.
type TCPProber struct {
	probe
	Port int
}

func (p *TCPProber) String() string { return fmt.Sprintf("tcp :%d", p.Port) }

// Probe runs the check once.
func (p *TCPProber) Probe(ctx context.Context, t Target) error {
	ctx, cancel := p.ctx(ctx)
	defer cancel()
	addr, err := t.RT.Address(ctx, t.ID, p.Port)
	if err != nil {
		return err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// ExecProber runs a command in the container and expects exit code 0.
type ExecProber struct {
	probe
	Command []string
}

func (p *ExecProber) String() string { return "exec " + strings.Join(p.Command, " ") }

// Probe runs the check once.
func (p *ExecProber) Probe(ctx context.Context, t Target) error {
	ctx, cancel := p.ctx(ctx)
	defer cancel()
	code, out, err := t.RT.Exec(ctx, t.ID, p.Command)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("exit code %d: %s", code, strings.TrimSpace(out))
	}
	return nil
}
