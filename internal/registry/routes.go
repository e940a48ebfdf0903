package registry

import (
	"regexp"
)

// route is what the wrapper needs to know about a request's path.
type route struct {
	kind string // "manifest", "blob", "upload", "uploads", "tags", "referrers", "base" or ""
	repo string
	ref  string // tag or digest (manifest), digest (blob, referrers), upload id
}

var (
	reManifest  = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
	reBlob      = regexp.MustCompile(`^/v2/(.+)/blobs/([a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+)$`)
	reUploads   = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/?$`)
	reUpload    = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/([^/]+)$`)
	reTags      = regexp.MustCompile(`^/v2/(.+)/tags/list$`)
	reReferrers = regexp.MustCompile(`^/v2/(.+)/referrers/([^/]+)$`)
)

func parseRoute(path string) route {
	if path == "/v2/" || path == "/v2" {
		return route{kind: "base"}
	}
	for _, c := range []struct {
		kind string
		re   *regexp.Regexp
	}{
		{"uploads", reUploads}, {"upload", reUpload}, {"blob", reBlob},
		{"manifest", reManifest}, {"tags", reTags}, {"referrers", reReferrers},
	} {
		if m := c.re.FindStringSubmatch(path); m != nil {
			r := route{kind: c.kind, repo: m[1]}
			if len(m) > 2 {
				r.ref = m[2]
			}
			return r
		}
	}
	return route{}
}
