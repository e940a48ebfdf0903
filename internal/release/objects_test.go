package release

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// TestObjectsFromPacks reads every commit and tag of packed repositories
// through the pack reader and checks each against go-git: plain objects,
// OFS and REF deltas (git gc --aggressive deltifies almost every commit).
func TestObjectsFromPacks(t *testing.T) {
	pack := map[string]func(t *testing.T, r *testRepo){
		"go-git": func(t *testing.T, r *testRepo) { r.must(r.git.RepackObjects(&git.RepackConfig{})) },
		"go-git-ref-deltas": func(t *testing.T, r *testRepo) {
			r.must(r.git.RepackObjects(&git.RepackConfig{UseRefDeltas: true}))
		},
	}
	if _, err := exec.LookPath("git"); err == nil {
		pack["git-gc-aggressive"] = func(t *testing.T, r *testRepo) {
			gitCmd(t, r.dir, "-c", "gc.auto=0", "gc", "--aggressive", "--prune=now", "-q")
		}
		pack["git-repack-ref-deltas"] = func(t *testing.T, r *testRepo) {
			gitCmd(t, r.dir, "-c", "repack.useDeltaBaseOffset=false", "repack", "-a", "-d", "-f", "--window=50", "--depth=50", "-q")
		}
	}
	wantKind := map[string]plumbing.ObjectType{
		"git-gc-aggressive":     plumbing.OFSDeltaObject,
		"git-repack-ref-deltas": plumbing.REFDeltaObject,
	}
	for name, packIt := range pack {
		t.Run(name, func(t *testing.T) {
			r := newTestRepo(t)
			var hashes []plumbing.Hash
			for i := range 300 {
				hashes = append(hashes, r.c(fmt.Sprintf("feat(shop): add feature number %d to the checkout flow\n\nA longer body that stays the same from commit to commit, so that\ncommits make good deltas of each other.\n", i)))
				if i%50 == 0 {
					r.tag(fmt.Sprintf("v1.%d.0", i))
				}
			}
			want := map[plumbing.Hash][]byte{}
			for _, h := range hashes {
				obj, err := r.git.Storer.EncodedObject(plumbing.AnyObject, h)
				r.must(err)
				rd, err := obj.Reader()
				r.must(err)
				var b bytes.Buffer
				b.ReadFrom(rd)
				rd.Close()
				want[h] = b.Bytes()
			}
			packIt(t, r)
			repo := r.open(Options{})
			defer repo.Close()
			if len(repo.objects.packs) == 0 {
				t.Fatal("no pack mapped")
			}
			for _, h := range hashes {
				typ, data, err := repo.objects.read(h)
				if err != nil || typ != plumbing.CommitObject || !bytes.Equal(data, want[h]) {
					t.Fatalf("commit %s: %v %v\n%s\nwant\n%s", h, typ, err, data, want[h])
				}
			}
			kinds := map[plumbing.ObjectType]int{}
			for _, h := range hashes {
				for _, p := range repo.objects.packs {
					if off := p.offset(h); off >= 0 {
						kinds[plumbing.ObjectType((p.data[off]>>4)&7)]++
					}
				}
			}
			t.Logf("commits stored as %v", kinds)
			if wantKind[name] != 0 && kinds[wantKind[name]] == 0 {
				t.Errorf("no commit stored as %s: the test does not test deltas", wantKind[name])
			}
			before := repo.objects.fallbacks
			if before != 0 {
				t.Errorf("%d objects read through go-git; want all from the pack", before)
			}
			v, err := repo.Next()
			if err != nil || v.Version.String() != "1.251.0" || len(v.Commits) != 49 {
				t.Errorf("Next = %+v, %v", v, err)
			}
		})
	}
}

func gitCmd(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// TestObjectsCorruptPack: a damaged pack is an error, not a wrong version.
func TestObjectsCorruptPack(t *testing.T) {
	r := newTestRepo(t)
	r.c("feat: a", "fix: b")
	r.must(r.git.RepackObjects(&git.RepackConfig{}))
	packs, _ := filepath.Glob(filepath.Join(r.dir, ".git", "objects", "pack", "*.pack"))
	if len(packs) != 1 {
		t.Fatalf("packs %v", packs)
	}
	data, err := os.ReadFile(packs[0])
	r.must(err)
	for i := 12; i < len(data)-20; i++ {
		data[i] ^= 0x55
	}
	r.must(os.WriteFile(packs[0], data, 0o644))
	repo, err := Open(r.dir, Options{Getenv: env()})
	if err == nil {
		_, err = repo.Next()
		repo.Close()
	}
	if err == nil {
		t.Fatal("a corrupt pack gave a version")
	}
}
