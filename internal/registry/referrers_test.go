package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestReferrers(t *testing.T) {
	srv := testRegistry(t, Options{})
	c := &client{t: t, base: srv.URL}
	m, subject, resp := c.pushImage("shop/web", "1.0.0", []byte("layer"))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push: %s", resp.Status)
	}
	empty := c.pushBlob("shop/web", []byte("{}"))
	sig := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"artifactType":"application/vnd.example.signature","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},`+
		`"layers":[{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2}],`+
		`"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d},"annotations":{"who":"ci"}}`,
		empty, empty, subject, len(m))
	sigD := digest.FromString(sig)
	resp = c.do("PUT", "/v2/shop/web/manifests/"+sigD.String(), "application/vnd.oci.image.manifest.v1+json", []byte(sig))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push signature: %s: %s", resp.Status, readBody(t, resp))
	}
	if got := resp.Header.Get("OCI-Subject"); got != subject.String() {
		t.Errorf("OCI-Subject = %q, want %s", got, subject)
	}
	list := func(query string) []descriptor {
		t.Helper()
		resp := c.do("GET", "/v2/shop/web/referrers/"+subject.String()+query, "", nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.oci.image.index.v1+json" {
			t.Fatalf("referrers: %s %s", resp.Status, resp.Header.Get("Content-Type"))
		}
		var idx struct{ Manifests []descriptor }
		if err := json.NewDecoder(resp.Body).Decode(&idx); err != nil {
			t.Fatal(err)
		}
		return idx.Manifests
	}
	got := list("")
	if len(got) != 1 || got[0].Digest != sigD || got[0].ArtifactType != "application/vnd.example.signature" ||
		got[0].Size != int64(len(sig)) || got[0].Annotations["who"] != "ci" {
		t.Fatalf("referrers: %+v", got)
	}
	if got := list("?artifactType=application/vnd.example.sbom"); len(got) != 0 {
		t.Errorf("filtered by another artifactType: %+v", got)
	}
	if got := list("?artifactType=application/vnd.example.signature"); len(got) != 1 {
		t.Errorf("filtered by its artifactType: %+v", got)
	}
	if resp := c.do("DELETE", "/v2/shop/web/manifests/"+sigD.String(), "", nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete signature: %s", resp.Status)
	}
	if got := list(""); len(got) != 0 {
		t.Errorf("referrers after the signature was deleted: %+v", got)
	}
	if resp := c.do("GET", "/v2/shop/web/referrers/sha256:nothex", "", nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("referrers of an invalid digest: %s, want 400", resp.Status)
	}
}
