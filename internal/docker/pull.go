package docker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// PullProgress receives a line about a pull in progress, at most once a
// second, and one when it ends.
type PullProgress func(msg string)

// RegistryAuth returns the encoded credentials (registry.EncodeAuthConfig)
// the engine sends to the registry of ref, or "" for none.
type RegistryAuth func(ref string) (string, error)

// SetPullProgress makes ResolveImage report the pulls it does.
func (r *Runtime) SetPullProgress(p PullProgress) { r.progress = p }

// SetRegistryAuth gives ResolveImage credentials for the registries it
// pulls from.
func (r *Runtime) SetRegistryAuth(a RegistryAuth) { r.auth = a }

// pullStream reads a pull's JSON progress stream to its end, reporting the
// bytes downloaded of the layers the engine fetches, and returns the error
// the stream reports, if any.
func pullStream(rc io.Reader, ref string, report PullProgress) error {
	if report == nil {
		return DrainStream(rc)
	}
	type layer struct{ current, total int64 }
	layers := map[string]*layer{}
	start := time.Now()
	last := start
	sum := func() (cur, total int64) {
		for _, l := range layers {
			cur += l.current
			total += l.total
		}
		return cur, total
	}
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			Status         string `json:"status"`
			ID             string `json:"id"`
			Error          string `json:"error"`
			ProgressDetail struct {
				Current int64 `json:"current"`
				Total   int64 `json:"total"`
			} `json:"progressDetail"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return err
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
		switch m.Status {
		case "Downloading":
			l := layers[m.ID]
			if l == nil {
				l = &layer{}
				layers[m.ID] = l
			}
			l.current, l.total = m.ProgressDetail.Current, m.ProgressDetail.Total
		case "Download complete", "Already exists", "Pull complete":
			if l := layers[m.ID]; l != nil {
				l.current = l.total
			}
		}
		if time.Since(last) >= time.Second {
			last = time.Now()
			cur, total := sum()
			report(fmt.Sprintf("pulling %s: %s of %s", ref, mb(cur), mb(total)))
		}
	}
	_, total := sum()
	report(fmt.Sprintf("pulled %s (%s) in %.1fs", ref, mb(total), time.Since(start).Seconds()))
	return nil
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
