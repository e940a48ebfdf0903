package image

import (
	"strings"

	dockerregistry "github.com/docker/docker/api/types/registry"

	"github.com/gantryhq/gantry/internal/config"
)

// PullAuth gives the Docker engine credentials for the images a deploy
// pulls, as the docker CLI would: gantry.yaml's registry credentials for
// its registry.url, and for every registry the Docker config, its
// credential helpers and GITHUB_TOKEN for ghcr.io. The CLI and the server
// both deploy with it.
func PullAuth(r config.Registry) func(ref string) (string, error) {
	return func(ref string) (string, error) {
		repo := ref
		if i := strings.Index(repo, "@"); i >= 0 {
			repo = repo[:i]
		}
		if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i]
		}
		host, _, _ := strings.Cut(repo, "/")
		var opts PushOptions
		if rh, _, _ := strings.Cut(r.Host(), "/"); rh != "" && rh == host {
			opts = PushOptionsFor(r)
		}
		user, pass, err := Credentials(repo, opts)
		if err != nil || user == "" {
			return "", err
		}
		a := dockerregistry.AuthConfig{Username: user, Password: pass, ServerAddress: host}
		if user == "<token>" {
			a = dockerregistry.AuthConfig{IdentityToken: pass, ServerAddress: host}
		}
		return dockerregistry.EncodeAuthConfig(a)
	}
}
