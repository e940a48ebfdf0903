package server

import (
	"context"
	"net/http"
	"sync"
	"time"
)

func (s *Server) livez(c *call) (int, any, error) {
	return http.StatusOK, map[string]string{"status": "ok"}, nil
}

func (s *Server) startupz(c *call) (int, any, error) {
	if !s.started.Load() {
		return http.StatusServiceUnavailable, map[string]string{"status": "starting", "detail": "recovering interrupted deployments"}, nil
	}
	return http.StatusOK, map[string]string{"status": "ok"}, nil
}

// Readiness is /readyz's answer.
type Readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
	// CheckedAt is when the checks ran; answers reuse it for ReadyCache.
	CheckedAt time.Time `json:"checked_at"`
}

func (s *Server) readyz(c *call) (int, any, error) {
	r := s.ready.get(s.opts.ReadyCache, s.checkReady)
	if !s.started.Load() {
		r.Status = "starting"
	}
	status := http.StatusOK
	if r.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	return status, r, nil
}

// checkReady reads the store and pings every environment's Docker host,
// together, each within a second.
func (s *Server) checkReady() Readiness {
	ctx, cancel := context.WithTimeout(s.baseCtx, time.Second)
	defer cancel()
	r := Readiness{Status: "ok", Checks: map[string]string{}, CheckedAt: time.Now().UTC()}
	var mu sync.Mutex
	set := func(k string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			r.Status = "unavailable"
			r.Checks[k] = err.Error()
			return
		}
		r.Checks[k] = "ok"
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); set("store", s.st.Ping(ctx)) }()
	hosts := map[string]bool{}
	for _, w := range s.watchers {
		if hosts[w.host] {
			continue
		}
		hosts[w.host] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "docker " + w.host
			if w.host == "" {
				name = "docker (default host)"
			}
			_, rt, err := w.open()
			if err == nil {
				err = rt.Ping(ctx)
			}
			set(name, err)
		}()
	}
	wg.Wait()
	return r
}

// readyCache answers from the last check while it is fresh; once stale it
// still answers at once and checks again in the background, unless the
// answer is older than maxStale, when the caller waits for a new check.
type readyCache struct {
	mu         sync.Mutex
	last       Readiness
	refreshing bool
}

const maxStale = 30 * time.Second

func (c *readyCache) get(ttl time.Duration, check func() Readiness) Readiness {
	c.mu.Lock()
	age := time.Since(c.last.CheckedAt)
	switch {
	case age < ttl:
		r := c.last
		c.mu.Unlock()
		return r
	case age < maxStale:
		if !c.refreshing {
			c.refreshing = true
			go func() {
				r := check()
				c.mu.Lock()
				c.last, c.refreshing = r, false
				c.mu.Unlock()
			}()
		}
		r := c.last
		c.mu.Unlock()
		return r
	}
	c.mu.Unlock()
	r := check()
	c.mu.Lock()
	c.last = r
	c.mu.Unlock()
	return r
}
