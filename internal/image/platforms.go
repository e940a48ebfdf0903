package image

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// PlatformDigests maps each platform of a stored image (linux/amd64) to
// the digest of its image manifest: what a release records, so that the
// bytes each platform runs can be told apart and checked later.
func (s *Store) PlatformDigests(digest string) (map[string]string, error) {
	t, err := s.taggable(digest)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	err = walk(t, func(m taggable) error {
		img, ok := m.(v1.Image)
		if !ok {
			return nil
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return err
		}
		p := cf.Platform()
		if p == nil || p.OS == "unknown" {
			return nil
		}
		d, err := img.Digest()
		if err != nil {
			return err
		}
		out[p.String()] = d.String()
		return nil
	})
	return out, err
}
