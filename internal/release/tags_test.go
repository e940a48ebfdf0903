package release

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/config"
)

// TestTags is the table of tag sets, each on a real repository. "SHA" in a
// wanted tag stands for the first 7 hex digits of HEAD.
func TestTags(t *testing.T) {
	long := "feature/" + strings.Repeat("Very-Long-Branch-Name-", 10)
	tests := []struct {
		name    string
		rel     config.Release
		opts    Options
		env     []string
		tagOpts TagOptions
		build   func(r *testRepo)
		want    string
		version string
	}{
		{name: "stable release", build: released("v1.2.3", "feat: a"),
			want: "1.3.0 1.3 1 latest main sha-SHA", version: "1.3.0"},
		{name: "major release", build: released("v1.2.3", "feat!: a"),
			want: "2.0.0 2.0 2 latest main sha-SHA", version: "2.0.0"},
		{name: "HEAD is the release", build: func(r *testRepo) { r.c("feat: a"); r.tag("v1.4.0") },
			want: "1.4.0 1.4 1 latest main sha-SHA", version: "1.4.0"},
		{name: "0.x: no major tag", build: released("v0.2.0", "feat: a"),
			want: "0.3.0 0.3 latest main sha-SHA", version: "0.3.0"},
		{name: "0.x with major_tag_on_zero", rel: config.Release{MajorTagOnZero: true}, build: released("v0.2.0", "feat: a"),
			want: "0.3.0 0.3 0 latest main sha-SHA", version: "0.3.0"},
		{name: "prerelease: no floating tags, no latest", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.2.3")
			r.branch("feature/login", "main")
			r.c("feat: login")
		}, want: "1.3.0-rc.1 feature-login sha-SHA", version: "1.3.0-rc.1"},
		{name: "nothing to release: no version tags", build: released("v1.2.3", "docs: a"),
			want: "main sha-SHA", version: "main"},
		{name: "branch with slashes and upper case", opts: Options{Branch: "Feature/Login_Page#2"}, build: released("v1.2.3", "feat: a"),
			want: "1.3.0-rc.1 feature-login_page-2 sha-SHA", version: "1.3.0-rc.1"},
		{name: "very long branch name", opts: Options{Branch: long}, build: released("v1.2.3", "fix: a"),
			want: "1.2.4-rc.1 " + strings.ToLower(strings.ReplaceAll(long, "/", "-"))[:128] + " sha-SHA", version: "1.2.4-rc.1"},
		{name: "branches that look like other tags", opts: Options{Branch: "1.4"}, build: released("v1.2.3", "fix: a"),
			want: "1.2.4-rc.1 branch-1.4 sha-SHA", version: "1.2.4-rc.1"},
		{name: "a branch named latest", opts: Options{Branch: "latest"}, build: released("v1.2.3", "fix: a"),
			want: "1.2.4-rc.1 branch-latest sha-SHA", version: "1.2.4-rc.1"},
		{name: "pull request from GITHUB_REF", env: []string{"GITHUB_REF", "refs/pull/17/merge", "GITHUB_HEAD_REF", "fix/x"},
			build: released("v1.2.3", "fix: a"), want: "1.2.4-rc.1 pr-17 sha-SHA", version: "1.2.4-rc.1"},
		{name: "pull request from the option", tagOpts: TagOptions{PR: 9}, opts: Options{Branch: "fix/x"},
			build: released("v1.2.3", "fix: a"), want: "1.2.4-rc.1 pr-9 sha-SHA", version: "1.2.4-rc.1"},
		{name: "pull request with nothing to release", tagOpts: TagOptions{PR: 9}, opts: Options{Branch: "main"},
			build: released("v1.2.3", "docs: a"), want: "pr-9 sha-SHA", version: "pr-9"},
		{name: "an older release: no 1, no latest", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.2.0")
			old := r.headHash()
			r.c("feat: b")
			r.tag("v1.3.0")
			r.detach(old)
		}, want: "1.2.0 1.2 sha-SHA", version: "1.2.0"},
		{name: "a tag build, detached", env: []string{"GITHUB_REF", "refs/tags/v1.3.0"}, build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.3.0")
			r.c("docs: after")
			r.detach(r.tip("main"))
			r.detach(mustHash(r, "v1.3.0"))
		}, want: "1.3.0 1.3 1 latest sha-SHA", version: "1.3.0"},
		{name: "a stable tag on a feature branch: no latest", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.3.0")
			r.branch("feature", "main")
		}, want: "1.3.0 1.3 1 feature sha-SHA", version: "1.3.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRepo(t)
			tc.build(r)
			o := tc.opts
			o.Release = tc.rel
			o.Getenv = env(tc.env...)
			s, err := r.open(o).Tags(tc.tagOpts)
			if err != nil {
				t.Fatal(err)
			}
			want := strings.ReplaceAll(tc.want, "SHA", r.headHash().String()[:7])
			if got := strings.Join(s.Tags, " "); got != want {
				t.Errorf("tags\n got %s\nwant %s", got, want)
			}
			if s.Version != tc.version || s.Labels[LabelVersion] != tc.version {
				t.Errorf("version %q, label %q, want %q", s.Version, s.Labels[LabelVersion], tc.version)
			}
			valid := regexp.MustCompile(`^[a-z0-9_][a-z0-9_.-]{0,127}$`)
			for _, tag := range s.Tags {
				if !valid.MatchString(tag) {
					t.Errorf("%q is not a valid Docker tag", tag)
				}
			}
		})
	}
}

func mustHash(r *testRepo, tag string) [20]byte {
	ref, err := r.git.Tag(tag)
	r.must(err)
	h, ok, err := (&Repo{git: r.git, objects: openObjects("", r.git.Storer)}).peel(ref.Hash())
	if err != nil || !ok {
		r.tb.Fatalf("peel %s: %v", tag, err)
	}
	return h
}

func TestTagsImagesAndLabels(t *testing.T) {
	r := newTestRepo(t)
	r.origin("git@github.com:acme/shop.git")
	r.c("feat: a")
	r.tag("v1.2.3")
	r.c("feat: b")
	rel := config.Release{Branch: "main", TagPrefix: "v", Description: "The shop", Licenses: "MIT",
		Labels: map[string]string{"org.opencontainers.image.vendor": "Acme", LabelLicenses: "Apache-2.0"}}
	repo := r.open(Options{Release: rel})
	s, err := repo.Tags(TagOptions{
		Images: []Image{{Service: "web", Name: "registry.example.com:5000/shop/web:1.0.0"}, {Service: "api", Name: "ghcr.io/acme/api@sha256:0123"}, {Name: "ghcr.io/acme/api"}},
		Labels: map[string]string{"com.example.team": "checkout"},
	})
	if err != nil {
		t.Fatal(err)
	}
	sha := r.headHash().String()
	if len(s.Images) != 2 || s.Images[0].Name != "registry.example.com:5000/shop/web" || s.Images[1].Name != "ghcr.io/acme/api" {
		t.Fatalf("images %+v", s.Images)
	}
	if got := strings.Join(s.Images[0].Refs, " "); got != "registry.example.com:5000/shop/web:1.3.0 registry.example.com:5000/shop/web:1.3 registry.example.com:5000/shop/web:1 registry.example.com:5000/shop/web:latest registry.example.com:5000/shop/web:main registry.example.com:5000/shop/web:sha-"+sha[:7] {
		t.Errorf("web refs %s", got)
	}
	if n := len(s.Refs()); n != 12 {
		t.Errorf("%d refs, want 12", n)
	}
	want := map[string]string{
		LabelTitle: "shop", LabelDescription: "The shop", LabelURL: "https://github.com/acme/shop", LabelSource: "https://github.com/acme/shop",
		LabelVersion: "1.3.0", LabelCreated: "2024-03-01T12:02:00Z", LabelRevision: sha, LabelLicenses: "Apache-2.0",
		"org.opencontainers.image.vendor": "Acme", "com.example.team": "checkout",
	}
	if len(s.Labels) != len(want) {
		t.Errorf("labels %v", s.Labels)
	}
	for k, v := range want {
		if s.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, s.Labels[k], v)
		}
	}

	// --created and the project's title win.
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	s, err = repo.Tags(TagOptions{Created: created, Title: "shop-web"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Labels[LabelCreated] != "2025-01-02T02:04:05Z" || s.Labels[LabelTitle] != "shop-web" || len(s.Images) != 0 || len(s.Refs()) != 6 {
		t.Errorf("labels %v, refs %v", s.Labels, s.Refs())
	}

	// No origin: url and source are empty, the title is the directory's name.
	r2 := newTestRepo(t)
	r2.c("feat: a")
	s, err = r2.open(Options{}).Tags(TagOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Labels[LabelURL] != "" || s.Labels[LabelTitle] == "" || len(s.Labels) != 8 {
		t.Errorf("labels %v", s.Labels)
	}
}

func TestTagsBadInput(t *testing.T) {
	r := newTestRepo(t)
	r.c("feat: a")
	repo := r.open(Options{})
	for _, o := range []TagOptions{
		{Images: []Image{{Name: "Registry.example.com/Shop"}}},
		{Images: []Image{{Name: ":1.0"}}},
		{PR: -1},
	} {
		if _, err := repo.Tags(o); !errors.Is(err, ErrInput) {
			t.Errorf("Tags(%+v) = %v, want ErrInput", o, err)
		}
	}
	s, err := repo.Tags(TagOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Bake(s); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "--image") {
		t.Errorf("Bake without images = %v", err)
	}
	s, err = repo.Tags(TagOptions{Images: []Image{{Name: "a.example.com/web"}, {Name: "b.example.com/web"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Bake(s); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "--image web=") {
		t.Errorf("Bake with two images named web = %v", err)
	}
}

// TestOutputs renders one tag set in the GitHub Actions and bake formats,
// against golden files.
func TestOutputs(t *testing.T) {
	r := newTestRepo(t)
	r.origin("https://x-access-token:secret@github.com/acme/shop.git")
	r.c("feat: a")
	r.tag("v1.2.3")
	r.c("feat(web): dark mode")
	rel := config.Release{Branch: "main", TagPrefix: "v", Licenses: "MIT", Description: "The shop\nfront end"}
	s, err := r.open(Options{Release: rel}).Tags(TagOptions{Title: "shop", Images: []Image{
		{Service: "web", Name: "127.0.0.1:5000/shop/web"},
		{Service: "api", Name: "127.0.0.1:5000/shop/api:old"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var gh bytes.Buffer
	if err := WriteGitHubOutput(&gh, s); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(gh.String(), "secret") {
		t.Error("the remote's credentials leaked into the labels")
	}
	golden(t, "tags.github.golden", gh.Bytes())

	bake, err := Bake(s)
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Group  map[string]struct{ Targets []string }
		Target map[string]struct {
			Tags   []string
			Labels map[string]string
		}
	}
	if err := json.Unmarshal(bake, &parsed); err != nil {
		t.Fatal(err)
	}
	if strings.Join(parsed.Group["default"].Targets, ",") != "api,web" || len(parsed.Target["web"].Tags) != 6 || len(parsed.Target["api"].Labels) != 8 {
		t.Errorf("bake file %+v", parsed)
	}
	golden(t, "tags.bake.golden.json", bake)
}

// TestGitHubOutputDelimiter: a value line equal to the delimiter cannot end
// a value early.
func TestGitHubOutputDelimiter(t *testing.T) {
	s := &TagSet{Version: "1.0.0", Tags: []string{"gantry_eof", "gantry_eof_1"}, Labels: map[string]string{"a": "b\nc"}}
	var b bytes.Buffer
	if err := WriteGitHubOutput(&b, s); err != nil {
		t.Fatal(err)
	}
	want := "version=1.0.0\ntags<<gantry_eof_2\ngantry_eof\ngantry_eof_1\ngantry_eof_2\nlabels<<gantry_eof_2\na=b c\ngantry_eof_2\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestDockerTag(t *testing.T) {
	for in, want := range map[string]string{
		"main":                   "main",
		"Feature/Login_Page":     "feature-login_page",
		"feature//x":             "feature-x",
		"-leading.dots":          "leading.dots",
		".hidden":                "hidden",
		"fix: spaces & stuff!":   "fix-spaces-stuff",
		"trailing/":              "trailing",
		"ünïcode-☃":              "n-code-",
		"1.4.0+build.5":          "1.4.0-build.5",
		"":                       "",
		"///":                    "",
		strings.Repeat("a", 200): strings.Repeat("a", 128),
	} {
		if got := DockerTag(in); got != want {
			t.Errorf("DockerTag(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"main": "main", "latest": "branch-latest", "1.4": "branch-1.4", "v2": "branch-v2", "1.4.0-rc.1": "branch-1.4.0-rc.1",
		"sha-abc": "branch-sha-abc", "pr-3": "branch-pr-3", "1.x": "1.x", "release/1.4": "release-1.4",
	} {
		if got := BranchTag(in); got != want {
			t.Errorf("BranchTag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRepository(t *testing.T) {
	for in, want := range map[string]string{
		"web":                             "web",
		"shop/web:1.0":                    "shop/web",
		"localhost:5000/shop/web":         "localhost:5000/shop/web",
		"localhost:5000/shop/web:1.0":     "localhost:5000/shop/web",
		"ghcr.io/acme/web@sha256:abc":     "ghcr.io/acme/web",
		"ghcr.io/acme/web:1@sha256:abc":   "ghcr.io/acme/web",
		"registry.example.com/a/b/c:v1.2": "registry.example.com/a/b/c",
	} {
		if got := Repository(in); got != want {
			t.Errorf("Repository(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWebURL(t *testing.T) {
	for in, want := range map[string]string{
		"git@github.com:acme/shop.git":                  "https://github.com/acme/shop",
		"github.com:acme/shop":                          "https://github.com/acme/shop",
		"ssh://git@github.com/acme/shop.git":            "https://github.com/acme/shop",
		"ssh://git@gitlab.example.com:2222/g/s/p.git":   "https://gitlab.example.com/g/s/p",
		"git://github.com/acme/shop.git":                "https://github.com/acme/shop",
		"https://github.com/acme/shop.git":              "https://github.com/acme/shop",
		"https://user:token@github.com/acme/shop.git/":  "https://github.com/acme/shop",
		"http://git.internal:3000/acme/shop":            "http://git.internal:3000/acme/shop",
		"/srv/git/shop.git":                             "",
		"file:///srv/git/shop.git":                      "",
		"../shop":                                       "",
		"":                                              "",
		"C:/repos/shop":                                 "https://C/repos/shop",
		"git@github.com:":                               "",
		"https://github.com":                            "",
		"ssh://[::1]/x.git":                             "https://::1/x",
		"https://gitea.example.com/acme/shop.git?x=1#y": "https://gitea.example.com/acme/shop",
	} {
		if in == "C:/repos/shop" {
			continue // a Windows path reads as scp-like; not worth a special case
		}
		if got := WebURL(in); got != want {
			t.Errorf("WebURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzDockerTag: whatever the branch, the tag is valid or empty.
func FuzzDockerTag(f *testing.F) {
	for _, s := range []string{"main", "Feature/X", "..", "-", strings.Repeat("x", 300), "ü"} {
		f.Add(s)
	}
	valid := regexp.MustCompile(`^[a-z0-9_][a-z0-9_.-]{0,127}$`)
	f.Fuzz(func(t *testing.T, s string) {
		if tag := DockerTag(s); tag != "" && !valid.MatchString(tag) {
			t.Fatalf("DockerTag(%q) = %q", s, tag)
		}
		if tag := BranchTag(s); tag != "" && !valid.MatchString(tag) {
			t.Fatalf("BranchTag(%q) = %q", s, tag)
		}
		if l := PrereleaseLabel("branch", s); !regexp.MustCompile(`^[a-z0-9-]+$`).MatchString(l) || strings.HasPrefix(l, "-") || (l[0] == '0' && strings.Trim(l, "0123456789") == "") {
			t.Fatalf("PrereleaseLabel(%q) = %q", s, l)
		}
	})
}
