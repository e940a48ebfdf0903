package cli

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/docker/docker/client"
	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/image"
	"github.com/gantryhq/gantry/internal/runtime"
)

// imageErr makes the image package's bad-input errors, and a refused
// immutable tag (nothing was changed either), exit with code 2.
func imageErr(err error) error {
	var ie *image.ImmutableTagError
	if errors.Is(err, image.ErrInput) || errors.Is(err, image.ErrNotBuilt) || errors.As(err, &ie) {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return err
}

// openImages loads gantry.yaml and opens the project's image store.
func (g *globals) openImages() (*config.File, *image.Store, error) {
	f, err := g.loadFile()
	if err != nil {
		return nil, nil, err
	}
	st, err := image.Open(image.DefaultDir(g.stateDirFor(f)))
	return f, st, err
}

func newBuildCmd(g *globals) *cobra.Command {
	var platforms []string
	cmd := &cobra.Command{
		Use:   "build [SERVICE...]",
		Short: "Build the services' images into gantry's image store",
		Long: `Build each service's image (every service with a build, or those named) and
keep it in gantry's image store (.gantry/images, an OCI image layout), where
gantry push finds it. A service's build is services.<name>.build in
gantry.yaml, else the build: section of its compose service.

How an image is built depends on the build and the platforms
(--platform, else release.platforms, else the Docker engine's own):

  binaries   services.<name>.build.binaries: no Docker daemon at all. Each
             platform's prebuilt binary becomes a layer on build.base (or
             scratch), assembled into a multi-platform OCI image index.
  engine     a Dockerfile, for the Docker engine's own platform.
  buildx     a Dockerfile for other or several platforms, through
             docker buildx build (when it is installed; gantry says so and
             what to do when it is not).

See docs/building.md.`,
		Example: `  gantry build
  gantry build web --platform linux/amd64,linux/arm64
  gantry build --output json | jq -r '.[] | .service + " " + .digest'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, st, err := g.openImages()
			if err != nil {
				return err
			}
			plats := f.Release.Platforms
			if cmd.Flags().Changed("platform") {
				plats = platforms
			}
			reqs, err := image.Requests(cmd.Context(), f, f.Dir, args, plats, nil)
			if err != nil {
				return imageErr(err)
			}
			rep := newReporter(g.stderr)
			defer rep.Done()
			var rt *docker.Runtime
			defer func() {
				if rt != nil {
					rt.Close()
				}
			}()
			var built []image.Built
			for _, req := range reqs {
				if !req.Build.Daemonless() && rt == nil {
					if rt, err = docker.New(""); err != nil {
						return fmt.Errorf("%w: service %s is built from a Dockerfile: %v", runtime.ErrUnreachable, req.Service, err)
					}
				}
				var c *client.Client
				if rt != nil {
					c = rt.Client()
				}
				b, err := st.Build(cmd.Context(), c, req, rep.Note)
				if err != nil {
					return imageErr(err)
				}
				built = append(built, b)
			}
			if g.output == "json" {
				return g.printJSON(built)
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SERVICE\tDIGEST\tPLATFORMS\tMETHOD\tSIZE")
			for _, b := range built {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", b.Service, b.Digest, strings.Join(b.Platforms, ","), b.Method, mbytes(b.Size))
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringSliceVar(&platforms, "platform", nil, "platforms to build, os/arch, comma-separated or repeated (default: release.platforms, else the Docker engine's)")
	return cmd
}

func mbytes(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func newPushCmd(g *globals) *cobra.Command {
	var tags []string
	var jobs int
	cmd := &cobra.Command{
		Use:   "push [SERVICE...]",
		Short: "Push the services' latest built images to the registry, with tags",
		Long: `Push the latest image gantry build made of each service (every service with a
build, or those named) to its repository (services.<name>.image, under
registry.url), by digest, then set each --tag.

Blobs go up in parallel; those the repository has already are skipped, and
those another repository of the same registry has are mounted, not sent.
Tags that match registry.immutable_tags (version tags, by default) are
never moved: when one already points to another digest, the push stops
before any tag moves, says which tag and digest, and exits with code 2.
Floating tags (latest, 1.4, 1) move.

Credentials: registry.username and registry.password_env, else the Docker
config and its credential helpers (docker login), else GITHUB_TOKEN for
ghcr.io. A registry on 127.0.0.1 or localhost is spoken to in plain HTTP.`,
		Example: `  gantry push --tag 1.4.0 --tag 1.4 --tag latest
  gantry push web --tag "sha-$(git rev-parse --short HEAD)"
  gantry push --tag 1.4.0 --output json | jq -r '.[] | .repository + "@" + .digest'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, st, err := g.openImages()
			if err != nil {
				return err
			}
			services := args
			if len(services) == 0 {
				reqs, err := image.Requests(cmd.Context(), f, f.Dir, nil, nil, nil)
				if err != nil {
					return imageErr(err)
				}
				for _, r := range reqs {
					services = append(services, r.Service)
				}
			}
			var targets []image.Target
			for _, svc := range services {
				b, err := st.Latest(svc)
				if err != nil {
					return imageErr(err)
				}
				repo, err := f.Repository(svc)
				if err != nil {
					return fmt.Errorf("%w: %v", errUsage, err)
				}
				targets = append(targets, image.Target{Service: svc, Digest: b.Digest, Repository: repo, Tags: tags})
			}
			rep := newReporter(g.stderr)
			defer rep.Done()
			opts := image.PushOptionsFor(f.Registry)
			opts.Jobs = jobs
			opts.Progress = func(e image.PushEvent) {
				if e.Phase != image.PhaseCheck {
					rep.Service(e.Service, e.Phase, e.Message)
				}
			}
			results, err := st.Push(cmd.Context(), targets, opts)
			if err != nil {
				return imageErr(err)
			}
			if g.output == "json" {
				return g.printJSON(results)
			}
			for _, r := range results {
				fmt.Fprintf(g.stdout, "%s: pushed %s", r.Service, r.Ref())
				if len(r.Tags) > 0 {
					fmt.Fprintf(g.stdout, " as %s", strings.Join(r.Tags, ", "))
				}
				fmt.Fprintf(g.stdout, " (%d blobs uploaded, %s; %d already there; %d mounted)\n", r.BlobsUploaded, mbytes(r.BytesUploaded), r.BlobsSkipped, r.BlobsMounted)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&tags, "tag", "t", nil, "a tag to set (repeatable); without any, the images are pushed by digest only")
	cmd.Flags().IntVar(&jobs, "jobs", 4, "blobs uploaded at once")
	return cmd
}
