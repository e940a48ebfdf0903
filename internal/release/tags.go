package release

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
)

// MaxTagLength is the longest tag Docker accepts.
const MaxTagLength = 128

// OCI annotation keys gantry sets as image labels.
const (
	LabelTitle       = "org.opencontainers.image.title"
	LabelDescription = "org.opencontainers.image.description"
	LabelURL         = "org.opencontainers.image.url"
	LabelSource      = "org.opencontainers.image.source"
	LabelVersion     = "org.opencontainers.image.version"
	LabelCreated     = "org.opencontainers.image.created"
	LabelRevision    = "org.opencontainers.image.revision"
	LabelLicenses    = "org.opencontainers.image.licenses"
)

// TagOptions says what to tag and label.
type TagOptions struct {
	// Images are the repositories to tag (any tag or digest in them is
	// dropped). None: the tags alone.
	Images []Image
	// PR is the pull request being built; 0 means GITHUB_REF's.
	PR int
	// Created is the image's creation time; zero means HEAD's committer
	// time, so that a rebuild of the same commit gets the same labels.
	Created time.Time
	// Title is the title label: gantry.yaml's project; empty means the
	// repository's name.
	Title string
	// Labels add to or override the computed labels and release.labels.
	Labels map[string]string
}

// Image is a repository to tag and, when it comes from gantry.yaml, the
// service it is the image of.
type Image struct {
	Service string   `json:"service,omitempty"`
	Name    string   `json:"name"`
	Refs    []string `json:"refs"`
}

// TagSet is the tags and labels of a build.
type TagSet struct {
	// Version is the version label: the version when the build is a
	// release or a prerelease, else the first of the pr-N, branch and sha
	// tags (as docker/metadata-action does).
	Version string `json:"version"`
	// Release says the tags include the version's; Prerelease that the
	// version is a prerelease.
	Release    bool     `json:"release"`
	Prerelease bool     `json:"prerelease"`
	Tags       []string `json:"tags"`
	Images     []Image  `json:"images,omitempty"`
	// Labels are OCI labels, the eight org.opencontainers.image ones and
	// any configured.
	Labels map[string]string `json:"labels"`
}

// Refs are the full references image:tag of every image, or the bare tags
// when there are no images.
func (s *TagSet) Refs() []string {
	if len(s.Images) == 0 {
		return s.Tags
	}
	var refs []string
	for _, im := range s.Images {
		refs = append(refs, im.Refs...)
	}
	return refs
}

// SortedLabels are the labels as key=value, by key.
func (s *TagSet) SortedLabels() []string {
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + s.Labels[k]
	}
	return out
}

// Tags computes the tag set of HEAD, following docker/metadata-action's
// conventions:
//   - a release or prerelease: {{version}};
//   - a stable release also {{major}}.{{minor}} and {{major}}, each only
//     when the version is the newest of its line, and {{major}} not while
//     0.x unless release.major_tag_on_zero; latest only when it is the
//     newest stable version of all and the build is on the release branch
//     (or a detached tag build);
//   - pr-N for a pull request, else the branch name;
//   - sha-<7 hex> always.
//
// A commit on the release branch with nothing to release gets no version
// tags: they would overwrite the last release's image.
func (r *Repo) Tags(o TagOptions) (*TagSet, error) {
	v, err := r.Next()
	if err != nil {
		return nil, err
	}
	pr := o.PR
	if pr == 0 {
		pr = v.PR
	}
	if pr < 0 {
		return nil, errorf(ErrInput, "pull request number %d: use a positive number", pr)
	}
	s := &TagSet{Release: v.New || v.AtTag}
	s.Prerelease = s.Release && v.Prerelease
	var tags []string
	if s.Release {
		s.Version = v.Version.String()
		tags = append(tags, s.Version)
		if !v.Prerelease {
			mm := fmt.Sprintf("%d.%d", v.Version.Major(), v.Version.Minor())
			if r.newestOf(v.Version, func(t *semver.Version) bool { return t.Major() == v.Version.Major() && t.Minor() == v.Version.Minor() }) {
				tags = append(tags, mm)
			}
			if (v.Version.Major() > 0 || r.rel.MajorTagOnZero) &&
				r.newestOf(v.Version, func(t *semver.Version) bool { return t.Major() == v.Version.Major() }) {
				tags = append(tags, strconv.FormatUint(v.Version.Major(), 10))
			}
			if (v.ReleaseBranch || v.Branch == "") && r.newestOf(v.Version, func(*semver.Version) bool { return true }) {
				tags = append(tags, "latest")
			}
		}
	}
	switch {
	case pr > 0:
		tags = append(tags, "pr-"+strconv.Itoa(pr))
	case v.Branch != "":
		tags = append(tags, BranchTag(v.Branch))
	}
	tags = append(tags, "sha-"+v.Head[:7])
	for _, t := range tags {
		if t = DockerTag(t); t != "" && !contains(s.Tags, t) {
			s.Tags = append(s.Tags, t)
		}
	}
	if s.Version == "" {
		s.Version = s.Tags[0]
	}
	for _, im := range o.Images {
		name := Repository(im.Name)
		if name == "" || name != strings.ToLower(name) || strings.ContainsAny(name, " \t") {
			return nil, errorf(ErrInput, "image %q: write a repository in lower case, like registry.example.com/shop/web", im.Name)
		}
		if containsImage(s.Images, name) {
			continue
		}
		im.Name, im.Refs = name, make([]string, len(s.Tags))
		for i, t := range s.Tags {
			im.Refs[i] = name + ":" + t
		}
		s.Images = append(s.Images, im)
	}
	s.Labels = r.labels(v, s.Version, o)
	return s, nil
}

// newestOf says whether v is at least every stable version tag in the
// repository that in selects.
func (r *Repo) newestOf(v *semver.Version, in func(*semver.Version) bool) bool {
	for _, t := range r.tags {
		if t.version != nil && t.version.Prerelease() == "" && in(t.version) && t.version.GreaterThan(v) {
			return false
		}
	}
	return true
}

func (r *Repo) labels(v *Version, version string, o TagOptions) map[string]string {
	created := o.Created
	if created.IsZero() {
		created = v.HeadTime
	}
	web := WebURL(r.originURL())
	title := o.Title
	if title == "" {
		title = path.Base(web)
		if web == "" {
			title = filepath.Base(r.root)
		}
	}
	l := map[string]string{
		LabelTitle:       title,
		LabelDescription: r.rel.Description,
		LabelURL:         web,
		LabelSource:      web,
		LabelVersion:     version,
		LabelCreated:     created.UTC().Format(time.RFC3339),
		LabelRevision:    v.Head,
		LabelLicenses:    r.rel.Licenses,
	}
	for k, val := range r.rel.Labels {
		l[k] = val
	}
	for k, val := range o.Labels {
		l[k] = val
	}
	return l
}

// DockerTag makes s a valid Docker tag: lower case, every run of
// characters other than [a-z0-9_.-] replaced by one -, no leading . or -,
// at most 128 characters.
func DockerTag(s string) string {
	b := make([]byte, 0, len(s))
	dash := false
	for _, c := range strings.ToLower(s) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' {
			if dash && len(b) > 0 {
				b = append(b, '-')
			}
			dash = false
			b = append(b, byte(c))
			continue
		}
		dash = true
	}
	t := strings.TrimLeft(string(b), ".-")
	if len(t) > MaxTagLength {
		t = t[:MaxTagLength]
	}
	return t
}

var versionLike = regexp.MustCompile(`^v?[0-9]+(\.[0-9]+){0,2}([-+].*)?$`)

// BranchTag is the tag of a branch. A branch whose tag would pass for
// another kind (latest, a version such as 1.4 or 1.4.0, sha-…, pr-…) is
// prefixed with branch-, so that pushing a branch never moves a release's
// tags.
func BranchTag(branch string) string {
	t := DockerTag(branch)
	if t == "latest" || versionLike.MatchString(t) || strings.HasPrefix(t, "sha-") || strings.HasPrefix(t, "pr-") {
		t = DockerTag("branch-" + t)
	}
	return t
}

// Repository drops the tag and the digest of an image reference:
// registry:5000/shop/web:1.0@sha256:… is registry:5000/shop/web.
func Repository(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if colon := strings.LastIndexByte(ref, ':'); colon > strings.LastIndexByte(ref, '/') {
		ref = ref[:colon]
	}
	return ref
}

// WebURL turns a git remote into the repository's web address:
// git@github.com:o/r.git and ssh://git@github.com/o/r are
// https://github.com/o/r; credentials in https remotes are dropped. Local
// paths and file:// give "".
func WebURL(remote string) string {
	remote = strings.TrimSpace(remote)
	if remote == "" {
		return ""
	}
	scheme, host, p := "https", "", ""
	if i := strings.Index(remote, "://"); i >= 0 {
		u, err := url.Parse(remote)
		if err != nil {
			return ""
		}
		switch u.Scheme {
		case "http", "https":
			scheme, host = u.Scheme, u.Host
		case "ssh", "git", "git+ssh", "ssh+git":
			host = u.Hostname()
		default:
			return ""
		}
		p = u.Path
	} else {
		// scp-like: [user@]host:path, where host has no slash before the colon.
		colon := strings.IndexByte(remote, ':')
		if colon <= 0 || strings.Contains(remote[:colon], "/") {
			return ""
		}
		host = remote[:colon]
		if at := strings.LastIndexByte(host, '@'); at >= 0 {
			host = host[at+1:]
		}
		p = remote[colon+1:]
	}
	p = strings.TrimSuffix(strings.Trim(p, "/"), ".git")
	if host == "" || p == "" {
		return ""
	}
	return scheme + "://" + host + "/" + p
}

// WriteGitHubOutput writes the tag set as GitHub Actions step outputs
// (version, and the multi-line tags and labels) in the format of
// $GITHUB_OUTPUT: name<<DELIMITER, the lines, DELIMITER. The delimiter is
// chosen so that no value line equals it. Labels are one key=value a line:
// newlines in a value become spaces.
func WriteGitHubOutput(w io.Writer, s *TagSet) error {
	refs := s.Refs()
	labels := s.SortedLabels()
	for i, l := range labels {
		labels[i] = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(l)
	}
	delim := "gantry_eof"
	for n := 1; contains(refs, delim) || contains(labels, delim); n++ {
		delim = "gantry_eof_" + strconv.Itoa(n)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "version=%s\n", s.Version)
	fmt.Fprintf(&b, "tags<<%s\n", delim)
	for _, r := range refs {
		b.WriteString(r + "\n")
	}
	fmt.Fprintf(&b, "%s\nlabels<<%s\n", delim, delim)
	for _, l := range labels {
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "%s\n", delim)
	_, err := w.Write(b.Bytes())
	return err
}

type bakeFile struct {
	Group  map[string]bakeGroup  `json:"group"`
	Target map[string]bakeTarget `json:"target"`
}

type bakeGroup struct {
	Targets []string `json:"targets"`
}

type bakeTarget struct {
	Tags   []string          `json:"tags"`
	Labels map[string]string `json:"labels"`
}

var bakeNameRE = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)

// Bake renders the tag set as a docker buildx bake file: a target per
// image, named after its service (or the repository's last path element),
// with its tags and the labels, and a default group of all of them. Bake
// merges it into targets of the same name from a docker-bake.hcl or a
// compose file given before it: `docker buildx bake -f compose.yaml -f
// tags.json`.
func Bake(s *TagSet) ([]byte, error) {
	if len(s.Images) == 0 {
		return nil, errorf(ErrInput, "a bake file needs images: give the services an image in gantry.yaml (services.web.image: registry.example.com/shop/web) or pass --image")
	}
	f := bakeFile{Group: map[string]bakeGroup{}, Target: map[string]bakeTarget{}}
	var names []string
	for _, im := range s.Images {
		name := im.Service
		if name == "" {
			name = path.Base(im.Name)
		}
		name = strings.Trim(bakeNameRE.ReplaceAllString(name, "-"), "-")
		if _, dup := f.Target[name]; dup {
			return nil, errorf(ErrInput, "two images make the bake target %q; name their services (--image web=%s)", name, im.Name)
		}
		f.Target[name] = bakeTarget{Tags: im.Refs, Labels: s.Labels}
		names = append(names, name)
	}
	sort.Strings(names)
	f.Group["default"] = bakeGroup{Targets: names}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func containsImage(l []Image, name string) bool {
	for _, im := range l {
		if im.Name == name {
			return true
		}
	}
	return false
}
