package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// testRegistry starts a real registry (distribution on a temp dir behind
// gantry's layer) on an httptest server.
func testRegistry(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	if opts.Root == "" {
		opts.Root = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	reg, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(func() { srv.Close(); reg.Close() })
	return srv
}

// usersFile writes a users file with the given name/password pairs.
func usersFile(t *testing.T, pairs ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	for i := 0; i < len(pairs); i += 2 {
		if _, err := AddUser(path, pairs[i], []byte(pairs[i+1])); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

type client struct {
	t          *testing.T
	base       string
	user, pass string
}

func (c *client) do(method, path, contentType string, body []byte) *http.Response {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// pushBlob uploads content in one POST+PUT and returns its digest.
func (c *client) pushBlob(repo string, content []byte) digest.Digest {
	c.t.Helper()
	d := digest.FromBytes(content)
	resp := c.do("POST", "/v2/"+repo+"/blobs/uploads/", "", nil)
	if resp.StatusCode != http.StatusAccepted {
		c.t.Fatalf("start upload: %s: %s", resp.Status, readBody(c.t, resp))
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = c.base + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	resp = c.do("PUT", strings.TrimPrefix(loc, c.base)+sep+"digest="+d.String(), "application/octet-stream", content)
	if resp.StatusCode != http.StatusCreated {
		c.t.Fatalf("finish upload: %s: %s", resp.Status, readBody(c.t, resp))
	}
	return d
}

// pushImage pushes a one-layer image whose layer is layer, tagged tag, and
// returns the manifest and its digest.
func (c *client) pushImage(repo, tag string, layer []byte) ([]byte, digest.Digest, *http.Response) {
	c.t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cfgD := c.pushBlob(repo, cfg)
	layerD := c.pushBlob(repo, layer)
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		cfgD, len(cfg), layerD, len(layer))
	resp := c.do("PUT", "/v2/"+repo+"/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json", []byte(m))
	return []byte(m), digest.FromString(m), resp
}

func TestAuth(t *testing.T) {
	users := usersFile(t, "alice", "s3cret", "bob", "hunter2")
	const tags = "/v2/app/tags/list" // 404 NAME_UNKNOWN once past auth
	for _, tc := range []struct {
		name       string
		anonymous  bool
		user, pass string
		method     string
		path       string
		want       int
	}{
		{"no credentials", false, "", "", "GET", "/v2/", 401},
		{"no credentials, HEAD", false, "", "", "HEAD", tags, 401},
		{"wrong password", false, "alice", "wrong", "GET", "/v2/", 401},
		{"unknown user", false, "mallory", "s3cret", "GET", "/v2/", 401},
		{"another user's password", false, "bob", "s3cret", "GET", "/v2/", 401},
		{"right credentials", false, "alice", "s3cret", "GET", "/v2/", 200},
		{"right credentials again (cached)", false, "alice", "s3cret", "GET", "/v2/", 200},
		{"right credentials push", false, "alice", "s3cret", "POST", "/v2/app/blobs/uploads/", 202},
		{"anonymous pull: GET", true, "", "", "GET", tags, 404},
		{"anonymous pull: HEAD", true, "", "", "HEAD", "/v2/app/manifests/latest", 404},
		{"anonymous pull: base endpoint still challenges", true, "", "", "GET", "/v2/", 401},
		{"anonymous pull: push refused", true, "", "", "POST", "/v2/app/blobs/uploads/", 401},
		{"anonymous pull: delete refused", true, "", "", "DELETE", "/v2/app/manifests/latest", 401},
		{"anonymous pull: wrong credentials still refused", true, "alice", "wrong", "GET", tags, 401},
		{"anonymous pull: user pushes with basic auth", true, "bob", "hunter2", "POST", "/v2/app/blobs/uploads/", 202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testRegistry(t, Options{Users: users, AnonymousPull: tc.anonymous})
			c := &client{t: t, base: srv.URL, user: tc.user, pass: tc.pass}
			resp := c.do(tc.method, tc.path, "", nil)
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: got %s, want %d: %s", tc.method, tc.path, resp.Status, tc.want, readBody(t, resp))
			}
			if tc.want != 401 {
				return
			}
			want := `Basic realm="gantry"`
			if tc.anonymous {
				want = `Bearer realm="` + srv.URL + `/v2/token",service="gantry"`
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != want {
				t.Errorf("WWW-Authenticate = %q, want %q", got, want)
			}
			if tc.method != "HEAD" {
				var body struct{ Errors []ociError }
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code != "UNAUTHORIZED" {
					t.Errorf("401 body: %+v, %v", body, err)
				}
			}
		})
	}
}

// TestAuthTokens: with anonymous pulls the registry serves the token flow
// the Docker engine follows; an anonymous token pulls only.
func TestAuthTokens(t *testing.T) {
	users := usersFile(t, "alice", "s3cret")
	srv := testRegistry(t, Options{Users: users, AnonymousPull: true})
	token := func(user, pass string) (string, int) {
		c := &client{t: t, base: srv.URL, user: user, pass: pass}
		resp := c.do("GET", "/v2/token?service=gantry&scope=repository:app:pull,push", "", nil)
		var body struct{ Token string }
		json.NewDecoder(resp.Body).Decode(&body)
		return body.Token, resp.StatusCode
	}
	bearer := func(tok, method, path string) int {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if _, st := token("alice", "wrong"); st != 401 {
		t.Errorf("token with a wrong password: %d, want 401", st)
	}
	anon, st := token("", "")
	if st != 200 || anon == "" {
		t.Fatalf("anonymous token: %d %q", st, anon)
	}
	user, _ := token("alice", "s3cret")
	for _, tc := range []struct {
		name, tok, method, path string
		want                    int
	}{
		{"anonymous token pings", anon, "GET", "/v2/", 200},
		{"anonymous token pulls", anon, "GET", "/v2/app/tags/list", 404},
		{"anonymous token cannot push", anon, "POST", "/v2/app/blobs/uploads/", 401},
		{"user token pushes", user, "POST", "/v2/app/blobs/uploads/", 202},
		{"forged token", anon[:len(anon)-2] + "xx", "GET", "/v2/app/tags/list", 401},
		{"user name swapped into an anonymous token", strings.Replace(user, ".", "x.", 1), "POST", "/v2/app/blobs/uploads/", 401},
	} {
		if got := bearer(tc.tok, tc.method, tc.path); got != tc.want {
			t.Errorf("%s: %s %s = %d, want %d", tc.name, tc.method, tc.path, got, tc.want)
		}
	}
}

func TestAuthUsersFileReloads(t *testing.T) {
	users := usersFile(t, "alice", "s3cret")
	srv := testRegistry(t, Options{Users: users})
	c := &client{t: t, base: srv.URL, user: "carol", pass: "pw-carol"}
	if resp := c.do("GET", "/v2/", "", nil); resp.StatusCode != 401 {
		t.Fatalf("carol before she is added: %s", resp.Status)
	}
	if _, err := AddUser(users, "carol", []byte("pw-carol")); err != nil {
		t.Fatal(err)
	}
	if resp := c.do("GET", "/v2/", "", nil); resp.StatusCode != 200 {
		t.Fatalf("carol after she is added: %s", resp.Status)
	}
	// A password change takes effect at once, even for cached credentials.
	if _, err := AddUser(users, "carol", []byte("new-password-for-carol")); err != nil {
		t.Fatal(err)
	}
	if resp := c.do("GET", "/v2/", "", nil); resp.StatusCode != 401 {
		t.Fatalf("carol's old password after a change: %s", resp.Status)
	}
}

func TestNewRefusesBadUsersFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "users")
	os.WriteFile(bad, []byte("alice:plaintext\n"), 0o600)
	if _, err := New(context.Background(), Options{Root: dir, Users: bad}); err == nil || !strings.Contains(err.Error(), "not a bcrypt hash") {
		t.Fatalf("plaintext password: err = %v", err)
	}
	if _, err := New(context.Background(), Options{Root: dir, Users: filepath.Join(dir, "missing")}); err == nil || !strings.Contains(err.Error(), "gantry registry user add") {
		t.Fatalf("missing users file: err = %v", err)
	}
	if _, err := New(context.Background(), Options{Root: dir, Immutable: []string{"("}}); err == nil {
		t.Fatal("bad immutable pattern accepted")
	}
}

func TestAddUserRefusesBadInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	for _, tc := range []struct{ name, pw string }{
		{"", "pw"}, {"a:b", "pw"}, {"has space", "pw"}, {"alice", ""}, {"alice", strings.Repeat("x", 73)},
	} {
		if _, err := AddUser(path, tc.name, []byte(tc.pw)); err == nil {
			t.Errorf("AddUser(%q, %d bytes) accepted", tc.name, len(tc.pw))
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("refused input wrote the users file: %v", err)
	}
}

func TestImmutableTags(t *testing.T) {
	srv := testRegistry(t, Options{})
	c := &client{t: t, base: srv.URL}
	_, d1, resp := c.pushImage("shop/web", "v1.2.3", []byte("layer one"))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("first push of v1.2.3: %s: %s", resp.Status, readBody(t, resp))
	}
	// The same manifest again is fine: pushes are idempotent.
	_, again, resp := c.pushImage("shop/web", "v1.2.3", []byte("layer one"))
	if resp.StatusCode != http.StatusCreated || again != d1 {
		t.Fatalf("same manifest again: %s (%s vs %s)", resp.Status, again, d1)
	}
	// Another manifest to the version tag is refused, with an OCI error body.
	_, d2, resp := c.pushImage("shop/web", "v1.2.3", []byte("layer two"))
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("moving v1.2.3: got %s, want 409: %s", resp.Status, readBody(t, resp))
	}
	var body struct{ Errors []ociError }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("tag v1.2.3 is immutable: it holds %s ; release a new version", d1)
	if len(body.Errors) != 1 || body.Errors[0].Code != "DENIED" || body.Errors[0].Message != want {
		t.Fatalf("409 body: %+v, want DENIED %q", body, want)
	}
	detail, _ := body.Errors[0].Detail.(map[string]any)
	if detail["current"] != d1.String() || detail["pushed"] != d2.String() {
		t.Errorf("409 detail: %v", detail)
	}
	// The tag did not move.
	resp = c.do("HEAD", "/v2/shop/web/manifests/v1.2.3", "", nil)
	if got := resp.Header.Get("Docker-Content-Digest"); got != d1.String() {
		t.Fatalf("v1.2.3 holds %s after the refused push, want %s", got, d1)
	}
	// Deleting the tag, or the manifest it holds, would free the tag for
	// other content: refused too.
	for _, ref := range []string{"v1.2.3", d1.String()} {
		resp := c.do("DELETE", "/v2/shop/web/manifests/"+ref, "", nil)
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("DELETE %s: %s, want 409: %s", ref, resp.Status, readBody(t, resp))
		} else if body := readBody(t, resp); !strings.Contains(body, "tag v1.2.3 is immutable") {
			t.Errorf("DELETE %s: body %s", ref, body)
		}
	}
	resp = c.do("HEAD", "/v2/shop/web/manifests/v1.2.3", "", nil)
	if got := resp.Header.Get("Docker-Content-Digest"); got != d1.String() {
		t.Fatalf("v1.2.3 holds %q after the refused deletes, want %s", got, d1)
	}
	// Floating tags move; prereleases are versions too.
	for _, tag := range []string{"latest", "1.2", "sha-abc1234"} {
		c.pushImage("shop/web", tag, []byte("layer one"))
		if _, _, resp := c.pushImage("shop/web", tag, []byte("layer two")); resp.StatusCode != http.StatusCreated {
			t.Errorf("moving floating tag %s: %s", tag, resp.Status)
		}
	}
	c.pushImage("shop/web", "2.0.0-rc.1", []byte("layer one"))
	if _, _, resp := c.pushImage("shop/web", "2.0.0-rc.1", []byte("layer two")); resp.StatusCode != http.StatusConflict {
		t.Errorf("moving prerelease tag 2.0.0-rc.1: %s, want 409", resp.Status)
	}
	// Pushing by digest is not a tag move; floating tags and untagged
	// manifests delete.
	m3, d3, _ := c.pushImage("shop/web", "scratch", []byte("layer three"))
	if resp := c.do("PUT", "/v2/shop/web/manifests/"+d3.String(), "application/vnd.oci.image.manifest.v1+json", m3); resp.StatusCode != http.StatusCreated {
		t.Errorf("push by digest: %s", resp.Status)
	}
	if resp := c.do("DELETE", "/v2/shop/web/manifests/"+d3.String(), "", nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("DELETE a manifest held by a floating tag: %s: %s", resp.Status, readBody(t, resp))
	}
}

func TestImmutablePatterns(t *testing.T) {
	srv := testRegistry(t, Options{Immutable: []string{`^release-`}})
	c := &client{t: t, base: srv.URL}
	c.pushImage("app", "release-1", []byte("one"))
	if _, _, resp := c.pushImage("app", "release-1", []byte("two")); resp.StatusCode != http.StatusConflict {
		t.Errorf("custom pattern: moving release-1: %s, want 409", resp.Status)
	}
	c.pushImage("app", "1.0.0", []byte("one"))
	if _, _, resp := c.pushImage("app", "1.0.0", []byte("two")); resp.StatusCode != http.StatusCreated {
		t.Errorf("1.0.0 outside the custom patterns: %s, want 201", resp.Status)
	}
	open := testRegistry(t, Options{Immutable: []string{}})
	c = &client{t: t, base: open.URL}
	c.pushImage("app", "1.0.0", []byte("one"))
	if _, _, resp := c.pushImage("app", "1.0.0", []byte("two")); resp.StatusCode != http.StatusCreated {
		t.Errorf("no patterns: moving 1.0.0: %s, want 201", resp.Status)
	}
}
