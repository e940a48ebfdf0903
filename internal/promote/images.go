package promote

import (
	"context"
	"fmt"
	"strings"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/runtime"
)

// splitRef cuts an image reference into its repository, tag and digest:
// 127.0.0.1:5000/shop/web:1.4@sha256:ab -> 127.0.0.1:5000/shop/web, 1.4,
// sha256:ab.
func splitRef(ref string) (repo, tag, digest string) {
	repo = ref
	if i := strings.Index(repo, "@"); i >= 0 {
		repo, digest = repo[:i], repo[i+1:]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo, tag = repo[:i], repo[i+1:]
	}
	return repo, tag, digest
}

// pinnedRef says whether ref names an image by its digest: the only kind
// of reference a promotion deploys.
func pinnedRef(ref string) bool {
	_, _, d := splitRef(ref)
	return strings.HasPrefix(d, "sha256:") && len(d) == len("sha256:")+64
}

// pinned is the digest reference, repository@sha256:..., of the image a
// service ran: the reference itself when it named a digest, else the
// registry digest the host resolved its tag to.
func pinned(env string, svc *runtime.Service) (string, error) {
	repo, _, digest := splitRef(svc.ImageRef)
	if digest == "" {
		digest = svc.Digest
	}
	ref := repo + "@" + digest
	if !pinnedRef(ref) {
		return "", refusal(ErrNotPromotable, "service %s ran %s in %s, an image with no registry digest (built on the host, or never pushed); only images from a registry can be promoted: make a release with gantry release and deploy it to %s with --release",
			svc.Name, svc.ImageRef, env, env)
	}
	return ref, nil
}

// Copier copies the image or index src (repository@digest) to the
// repository dst; image.Copy is the real one (on one registry it mounts
// every blob and sends manifests only).
type Copier func(ctx context.Context, src, dst string) error

// pin decides the image of every service of the target model m: exactly
// the digest the source plan ran, copied first to the repository the
// target environment names for the service when that is another one. A
// service the source did not run must be pinned by digest in the target's
// own compose files. Production never receives a tag.
func pin(ctx context.Context, copyImage Copier, from string, source *runtime.Plan, m *config.Model, release string) (map[string]string, error) {
	images := map[string]string{}
	for _, name := range m.Order {
		target := m.Compose.Services[name].Image
		svc, ok := source.Services[name]
		if !ok {
			if !pinnedRef(target) {
				return nil, refusal(ErrNotPromotable, "service %s runs in %s but was not part of release %s in %s, and its image %s is not pinned by digest; pin it (image: repo@sha256:...) in %s's compose files, or deploy it to %s with the release",
					name, m.Env.Name, release, from, target, m.Env.Name, from)
			}
			continue
		}
		src, err := pinned(from, svc)
		if err != nil {
			return nil, err
		}
		srcRepo, _, digest := splitRef(src)
		dstRepo, _, _ := splitRef(target)
		if dstRepo == srcRepo {
			images[name] = src
			continue
		}
		if err := copyImage(ctx, src, dstRepo); err != nil {
			return nil, fmt.Errorf("service %s: copying %s to %s's repository %s: %w", name, src, m.Env.Name, dstRepo, err)
		}
		images[name] = dstRepo + "@" + digest
	}
	return images, nil
}
