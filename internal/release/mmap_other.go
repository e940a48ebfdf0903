//go:build !unix

package release

import "errors"

// mapFile is not available here: every object is read through go-git.
func mapFile(string) ([]byte, func() error, error) {
	return nil, nil, errors.ErrUnsupported
}
