package release

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// benchCommits is the size of the benchmark's history: the bench
// compares version + tags on a 10,000-commit repository with `git log`.
const benchCommits = 10000

// buildBenchRepo writes a linear history of n commits on main (a realistic
// mix of feat, fix and chore, some with bodies), tags release every commit
// listed in tags with v1.<i>.0, and packs the objects as git gc would.
// GANTRY_BENCH_REPO keeps the repository in that directory, to compare
// with `git -C $GANTRY_BENCH_REPO log --oneline | wc -l`.
func buildBenchRepo(b *testing.B, n int, tags ...int) *testRepo {
	b.Helper()
	dir := os.Getenv("GANTRY_BENCH_REPO")
	if dir == "" {
		dir = b.TempDir()
	}
	r := newTestRepoIn(b, dir)
	at := map[int]bool{}
	for _, t := range tags {
		at[t] = true
	}
	var parent []plumbing.Hash
	for i := range n {
		var msg string
		switch {
		case i%10 == 0:
			msg = fmt.Sprintf("feat(shop): add feature number %d to the checkout flow", i)
		case i%3 == 0:
			msg = fmt.Sprintf("fix: handle the edge case %d in price rounding\n\nThe rounding of prices in cents went wrong for\nsome currencies; this fixes it.\n", i)
		default:
			msg = fmt.Sprintf("chore: routine maintenance %d", i)
		}
		h := r.rawCommit(msg, parent...)
		parent = []plumbing.Hash{h}
		if at[i] {
			r.tagAt(fmt.Sprintf("v1.%d.0", i), h)
		}
	}
	r.must(r.git.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName("main"), parent[0])))
	r.must(r.git.RepackObjects(&git.RepackConfig{}))
	return r
}

// BenchmarkVersionAndTags measures what `gantry version` and `gantry tags`
// do on a 10,000-commit repository: open it, read its tags, walk history
// from HEAD to the last release, compute the version and the tag set.
//   - no-tag: no release yet, the walk reads all 10,000 commits (the worst
//     case, and the same commits as `git log`);
//   - no-tag-deltified: the same after git gc --aggressive, which stores
//     commits as deltas of each other;
//   - tag-100-back: the usual case, the last release 100 commits ago among
//     100 older release tags.
func BenchmarkVersionAndTags(b *testing.B) {
	var older []int
	for i := 100; i < benchCommits-100; i += 99 {
		older = append(older, i)
	}
	for _, bc := range []struct {
		name       string
		tags       []int
		want       int
		aggressive bool
	}{
		{"no-tag", nil, benchCommits, false},
		{"no-tag-deltified", nil, benchCommits, true},
		{"tag-100-back", append(older, benchCommits-101), 100, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := buildBenchRepo(b, benchCommits, bc.tags...)
			if bc.aggressive {
				// git gc --aggressive stores almost every commit as a delta.
				if _, err := exec.LookPath("git"); err != nil {
					b.Skip("git is not installed")
				}
				cmd := exec.Command("git", "-c", "gc.auto=0", "gc", "--aggressive", "--prune=now", "-q")
				cmd.Dir = r.dir
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("git gc: %v\n%s", err, out)
				}
			}
			b.ResetTimer()
			for b.Loop() {
				repo, err := Open(r.dir, Options{Getenv: env()})
				if err != nil {
					b.Fatal(err)
				}
				v, err := repo.Next()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := repo.Tags(TagOptions{}); err != nil {
					b.Fatal(err)
				}
				repo.Close()
				if len(v.Commits) != bc.want {
					b.Fatalf("%d commits since the release, want %d", len(v.Commits), bc.want)
				}
			}
		})
	}
}
