package cli

import (
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/image"
)

// pullAuth gives the Docker engine credentials for the images a deploy
// pulls; see image.PullAuth.
func pullAuth(r config.Registry) func(ref string) (string, error) { return image.PullAuth(r) }
