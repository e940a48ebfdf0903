package deploy

import (
	"context"
	"errors"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/store"
)

// PinRelease pins the services of a recorded release to the digests it
// pushed, so what runs is exactly what was released. A release gantry has
// no record of stays a name for the compose file's images, as before gantry
// release existed. images (SERVICE -> REF, from --image) still override a
// service. The CLI and the server deploy through it.
func PinRelease(ctx context.Context, st *store.Store, m *config.Model, project, version string, images map[string]string) (map[string]string, error) {
	r, err := st.GetRelease(ctx, project, version)
	if errors.Is(err, store.ErrNotFound) {
		return images, nil
	}
	if err != nil {
		return nil, err
	}
	if r.State != store.ReleaseReleased {
		return nil, inputError("release %s is %s, not released (%s); run gantry release again, or see gantry releases", version, r.State, r.Reason)
	}
	if images == nil {
		images = map[string]string{}
	}
	for svc, img := range r.Images {
		if _, ok := m.Compose.Services[svc]; !ok {
			continue
		}
		if _, ok := images[svc]; !ok {
			images[svc] = img.Ref()
		}
	}
	return images, nil
}
