package testenv

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Load is a bounded load generator: Rate GETs per second for a duration,
// to loopback, each answer checked. It stops by itself.
type Load struct {
	mu       sync.Mutex
	total    int
	failed   int
	failedAt []time.Time // when each failed request was sent
	errors   []string
	byKey    map[string]int
	wg       sync.WaitGroup
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// LoadCheck judges one answer: the key it counts under (say, the release
// that answered) or why it failed. The default wants 200 and counts the
// trimmed body.
type LoadCheck func(resp *http.Response, body []byte) (key string, err error)

// StartLoad sends rate GETs per second to url with Host host for d (at
// most 30 s), each in its own goroutine over kept-alive connections, and
// checks each answer with check (nil: status 200, keyed by body).
func StartLoad(t testing.TB, url, host string, rate int, d time.Duration, check LoadCheck) *Load {
	if d > 30*time.Second {
		d = 30 * time.Second
	}
	if check == nil {
		check = func(resp *http.Response, body []byte) (string, error) {
			if resp.StatusCode != http.StatusOK {
				return "", fmt.Errorf("status %d: %.100s", resp.StatusCode, body)
			}
			return strings.TrimSpace(string(body)), nil
		}
	}
	l := &Load{byKey: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	n := int(d.Seconds() * float64(rate))
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
	send:
		for range n {
			select {
			case <-tick.C:
			case <-l.stop:
				break send
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				l.one(hc, url, host, check)
			}()
		}
		l.wg.Wait()
		tr.CloseIdleConnections()
	}()
	t.Cleanup(func() { <-l.done })
	return l
}

func (l *Load) one(hc *http.Client, url, host string, check LoadCheck) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Host = host
	var key string
	sent := time.Now()
	resp, err := hc.Do(req)
	if err == nil {
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr != nil {
			err = rerr
		} else {
			key, err = check(resp, body)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	if err != nil {
		l.failed++
		l.failedAt = append(l.failedAt, sent)
		if len(l.errors) < 10 {
			l.errors = append(l.errors, err.Error())
		}
		return
	}
	l.byKey[key]++
}

// LoadResult is what a finished load saw.
type LoadResult struct {
	Total, Failed int
	// Errors are the first failures, for the test's message.
	Errors []string
	// ByKey counts the answers by their check's key.
	ByKey    map[string]int
	failedAt []time.Time
}

// Stop ends the load early: no more requests are sent.
func (l *Load) Stop() { l.stopOnce.Do(func() { close(l.stop) }) }

// Wait waits for the load to end and returns what it saw.
func (l *Load) Wait() LoadResult {
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return LoadResult{Total: l.total, Failed: l.failed, Errors: l.errors, ByKey: l.byKey, failedAt: l.failedAt}
}

// FailedAfter counts the failed requests that were sent after t. (Not
// those that ended after t: on a loaded machine a request refused before t
// may be noticed after it.)
func (r LoadResult) FailedAfter(t time.Time) int {
	n := 0
	for _, at := range r.failedAt {
		if at.After(t) {
			n++
		}
	}
	return n
}
