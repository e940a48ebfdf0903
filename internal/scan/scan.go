package scan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/store"
)

// ErrFailed: the gate found a vulnerability it does not let through.
var ErrFailed = errors.New("failed its scan gate")

// Gate is the scan gate of a project: Trivy, and the policy of
// gantry.yaml's gates.scan.
type Gate struct {
	trivy  *Trivy
	policy Policy
	server string
}

// Settings turns gates.scan of f (its defaults when f has none) into the
// options Trivy runs with and the policy that decides; the ignore file is
// read here, so a bad one stops the scan before Trivy runs. now decides
// which ignore entries have expired.
func Settings(f *config.File, now time.Time) (Options, Policy, error) {
	sc := f.Gates.Scan
	if sc == nil {
		sc = &config.Scan{FailOn: config.DefaultScanFailOn, Timeout: config.Duration(config.DefaultScanTimeout)}
	}
	failOn, err := ParseSeverity(sc.FailOn)
	if err != nil {
		return Options{}, Policy{}, fmt.Errorf("gates.scan.fail_on: %w", err)
	}
	o := Options{Server: sc.Server, CacheDir: f.RelPath(sc.CacheDir), Offline: sc.Offline, Timeout: sc.Timeout.D(), Trivy: sc.Trivy}
	if strings.Contains(o.Trivy, "/") {
		o.Trivy = f.RelPath(o.Trivy)
	} else if o.Trivy != "" {
		p, err := exec.LookPath(o.Trivy)
		if err != nil {
			return Options{}, Policy{}, fmt.Errorf("%w: gates.scan.trivy is %q and there is no such program on $PATH.\nInstall Trivy %s: %s (in gantry's source tree, scripts/ensure-trivy.sh builds it into bin/trivy)",
				ErrTrivyMissing, o.Trivy, TrivyVersion, TrivyInstall)
		}
		o.Trivy = p
	}
	if f.Registry.Username != "" {
		o.Username = f.Registry.Username
		if f.Registry.PasswordEnv != "" {
			o.Password = os.Getenv(f.Registry.PasswordEnv)
		}
	}
	p := Policy{FailOn: failOn, IgnoreUnfixed: sc.IgnoreUnfixed, Now: now}
	file := sc.IgnoreFile
	if file == "" {
		file = DefaultIgnoreFile
		if _, err := os.Stat(f.RelPath(file)); err != nil {
			return o, p, nil
		}
	}
	if p.Ignores, err = LoadIgnores(f.RelPath(file)); err != nil {
		return Options{}, Policy{}, err
	}
	p.IgnoreFile = file
	return o, p, nil
}

// Open finds Trivy for the options.
func Open(ctx context.Context, o Options, p Policy) (*Gate, error) {
	t, err := NewTrivy(ctx, o)
	if err != nil {
		return nil, err
	}
	return &Gate{trivy: t, policy: p, server: o.Server}, nil
}

// Trivy is the scanner the gate runs.
func (g *Gate) Trivy() *Trivy { return g.trivy }

// Run scans every image and decides. progress, when not nil, hears about
// each image as its scan starts.
func (g *Gate) Run(ctx context.Context, images []Image, progress func(img Image)) (*Verdict, error) {
	scans := make([]Scanned, 0, len(images))
	for _, img := range images {
		if progress != nil {
			progress(img)
		}
		r, err := g.trivy.Scan(ctx, img)
		if err != nil {
			return nil, err
		}
		scans = append(scans, Scanned{Image: img, Report: r})
	}
	v := Decide(scans, g.policy)
	v.Trivy, v.Server = g.trivy.Version(), g.server
	return v, nil
}

// ReleaseImages are the images of a pushed release: every service's image
// for each platform, by the digest of its manifest, in its registry.
func ReleaseImages(r *store.Release) []Image {
	var out []Image
	for _, svc := range slices.Sorted(maps.Keys(r.Images)) {
		img := r.Images[svc]
		if len(img.Platforms) == 0 {
			out = append(out, Image{Service: svc, Digest: img.Digest, Ref: img.Repository + "@" + img.Digest, Source: SourceRegistry})
			continue
		}
		for _, p := range slices.Sorted(maps.Keys(img.Platforms)) {
			d := img.Platforms[p]
			out = append(out, Image{Service: svc, Platform: p, Digest: d, Ref: img.Repository + "@" + d, Source: SourceRegistry})
		}
	}
	return out
}

// StoredImages are the same images read from gantry's image store (an OCI
// layout at dir) before they are pushed.
func StoredImages(r *store.Release, dir string) []Image {
	out := ReleaseImages(r)
	for i := range out {
		out[i].Layout, out[i].Source = dir, SourceImageStore
	}
	return out
}

// Record stores the verdict with the release.
func Record(ctx context.Context, st *store.Store, r *store.Release, v *Verdict, actor string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return st.RecordGate(ctx, r, &store.GateRun{Gate: store.GateScan, Passed: v.Passed, Summary: v.Summary(), Report: b, Actor: actor, At: v.At})
}

// Err is nil when the verdict passed, else an error that says why, naming
// the release.
func (v *Verdict) Err(release string) error {
	if v.Passed {
		return nil
	}
	hint := "upgrade the packages to their fixed versions and release again"
	if v.IgnoreFile != "" {
		hint += ", or add an entry with a reason and an expiry date to " + v.IgnoreFile
	} else {
		hint += ", or list the vulnerability with a reason and an expiry date in " + DefaultIgnoreFile
	}
	return fmt.Errorf("release %s %w: %s; %s (docs/scan.md)", release, ErrFailed, strings.TrimPrefix(v.Summary(), "failed: "), hint)
}

// Loaded reads a verdict stored with a release.
func Loaded(g *store.GateRun) (*Verdict, error) {
	var v Verdict
	if err := json.Unmarshal(g.Report, &v); err != nil {
		return nil, fmt.Errorf("the scan verdict of release %s does not read: %w", g.Version, err)
	}
	return &v, nil
}

// ScanRelease scans the pushed images of a release of f's project (the
// newest released one when version is empty) from their registry with the
// gate of gates.scan (its defaults when gantry.yaml has none), and stores
// the verdict with the release. A verdict that fails is returned with a nil
// error; Verdict.Err says why it failed.
func ScanRelease(ctx context.Context, f *config.File, st *store.Store, version, actor string, progress func(Image)) (*store.Release, *Verdict, error) {
	r, err := releaseToScan(ctx, f, st, version)
	if err != nil {
		return nil, nil, err
	}
	o, p, err := Settings(f, time.Now())
	if err != nil {
		return nil, nil, err
	}
	g, err := Open(ctx, o, p)
	if err != nil {
		return nil, nil, err
	}
	v, err := g.Run(ctx, ReleaseImages(r), progress)
	if err != nil {
		return nil, nil, err
	}
	if err := Record(ctx, st, r, v, actor); err != nil {
		return nil, nil, err
	}
	return r, v, nil
}

func releaseToScan(ctx context.Context, f *config.File, st *store.Store, version string) (*store.Release, error) {
	if version == "" {
		rs, err := st.Releases(ctx, f.Project, 0)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if r.State == store.ReleaseReleased {
				return st.GetRelease(ctx, f.Project, r.Version)
			}
		}
		return nil, fmt.Errorf("%w: %s has no release to scan; make one with gantry release", ErrInput, f.Project)
	}
	r, err := st.GetRelease(ctx, f.Project, version)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %v; see gantry releases for the versions there are", ErrInput, err)
	}
	if err != nil {
		return nil, err
	}
	if r.State != store.ReleaseReleased {
		why := ""
		if r.Reason != "" {
			why = " (" + r.Reason + ")"
		}
		return nil, fmt.Errorf("%w: release %s is %s%s, so its images are not in the registry to scan; run gantry release again", ErrInput, version, r.State, why)
	}
	return r, nil
}
