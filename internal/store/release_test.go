package store

import (
	"context"
	"errors"
	"testing"
)

func TestReleaseLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	img := map[string]ReleaseImage{"web": {Repository: "127.0.0.1:5000/shop/web", Digest: "sha256:aa", Platforms: map[string]string{"linux/amd64": "sha256:a1", "linux/arm64": "sha256:a2"}}}

	r := &Release{Project: "shop", Version: "1.0.0", Commit: "c0ffee", Tags: []string{"1.0.0", "1.0", "1", "latest"}, Actor: "ci"}
	if err := s.BeginRelease(ctx, r); err != nil {
		t.Fatal(err)
	}
	if r.ID == 0 || r.State != ReleasePushing {
		t.Fatalf("began %+v; want an id and state pushing", r)
	}
	// A crash here leaves the release as pushing; a retry takes it over.
	retry := &Release{Project: "shop", Version: "1.0.0", Commit: "c0ffee", Tags: r.Tags}
	if err := s.BeginRelease(ctx, retry); err != nil {
		t.Fatalf("retry of an unfinished release: %v", err)
	}
	if err := s.FinishRelease(ctx, r, ReleaseReleased, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finishing the taken-over release: %v; want ErrNotFound", err)
	}
	retry.Images = img
	if err := s.FinishRelease(ctx, retry, ReleaseReleased, ""); err != nil {
		t.Fatal(err)
	}

	// Reopen: the record survives the process.
	s.Close()
	s = open(t, dir)
	got, err := s.GetRelease(ctx, "shop", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != ReleaseReleased || got.Commit != "c0ffee" || got.FinishedAt == nil || len(got.Tags) != 4 {
		t.Fatalf("got %+v", got)
	}
	if ref := got.Images["web"].Ref(); ref != "127.0.0.1:5000/shop/web@sha256:aa" {
		t.Fatalf("ref %s", ref)
	}
	if got.Images["web"].Platforms["linux/arm64"] != "sha256:a2" {
		t.Fatalf("platforms %v", got.Images["web"].Platforms)
	}

	// Released is final: the same version again is refused, nothing changes.
	again := &Release{Project: "shop", Version: "1.0.0", Commit: "d00d"}
	if err := s.BeginRelease(ctx, again); !errors.Is(err, ErrReleased) {
		t.Fatalf("second release of 1.0.0: %v; want ErrReleased", err)
	}
	if got, _ := s.GetRelease(ctx, "shop", "1.0.0"); got.Commit != "c0ffee" {
		t.Fatalf("refused release changed the record: %+v", got)
	}

	failed := &Release{Project: "shop", Version: "1.1.0", Commit: "beef"}
	if err := s.BeginRelease(ctx, failed); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRelease(ctx, failed, ReleaseFailed, "push: tag 1.1.0 is immutable"); err != nil {
		t.Fatal(err)
	}
	list, err := s.Releases(ctx, "shop", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Version != "1.1.0" || list[0].State != ReleaseFailed || list[0].Reason == "" || list[1].Version != "1.0.0" {
		t.Fatalf("releases %+v", list)
	}
	if _, err := s.GetRelease(ctx, "shop", "9.9.9"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown release: %v", err)
	}
	if other, _ := s.Releases(ctx, "other", 0); len(other) != 0 {
		t.Fatalf("another project's releases: %+v", other)
	}
}
