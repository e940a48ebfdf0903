package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/gantryhq/gantry/internal/registry"
)

func newRegistryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Run gantry's embedded OCI registry, manage its users, collect its garbage",
		Long: `gantry's embedded registry is an OCI distribution registry (distribution's,
with on-disk storage) behind gantry's own layer: basic authentication with
bcrypt-hashed users, tags that never move once they hold a version, and the
whole OCI distribution-spec 1.1 (sha512 content, referrers).

It listens on 127.0.0.1:5000 by default, where the local Docker engine pushes
and pulls without TLS. Its content lives in <state dir>/registry unless
--root says otherwise.`,
		Example: `  gantry registry user add ci --password-stdin < ci.password
  gantry registry serve --users .gantry/registry/users
  docker push 127.0.0.1:5000/shop/web:1.0.0
  gantry registry gc --dry-run`,
	}
	cmd.AddCommand(newRegistryServeCmd(g), newRegistryUserCmd(g), newRegistryGCCmd(g))
	return cmd
}

// registryRoot is --root, or <state dir>/registry. The state dir defaults to
// .gantry next to gantry.yaml, which need not exist to run a registry.
func (g *globals) registryRoot(root string) string {
	if root != "" {
		return root
	}
	if g.stateDir != "" {
		return filepath.Join(g.stateDir, "registry")
	}
	return filepath.Join(filepath.Dir(g.file), ".gantry", "registry")
}

func newRegistryServeCmd(g *globals) *cobra.Command {
	var o registry.ServeOptions
	var noImmutable bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the embedded registry until interrupted",
		Long: `Serve the embedded OCI registry until SIGINT or SIGTERM, then finish the
requests in flight and stop.

Authentication: with --users FILE every request needs one of the file's users
(basic auth; add them with gantry registry user add). --anonymous-pull also
lets requests without credentials pull (GET and HEAD). Without --users the
registry is open, which gantry allows on a loopback address only, unless you
pass --insecure-open.

Immutability: a manifest PUT to a tag that matches an --immutable pattern
(default: versions such as 1.2.3 and v1.2.3-rc.1) and already holds another
digest is refused with HTTP 409; pushing the same digest again is fine.
Floating tags (latest, 1.2, sha-abc1234) move freely.`,
		Example: `  gantry registry serve
  gantry registry serve --addr 127.0.0.1:5001 --root /srv/registry --users /srv/registry/users
  gantry registry serve --users users --anonymous-pull --immutable '^release-.*$'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Root = g.registryRoot(o.Root)
			o.Logger = g.log
			if noImmutable {
				o.Immutable = []string{}
			}
			o.Ready = func(addr string) {
				if g.output == "json" {
					g.printJSON(map[string]string{"addr": addr, "root": o.Root})
					return
				}
				fmt.Fprintf(g.stdout, "registry listening on %s (root %s)\n", addr, o.Root)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return registryErr(registry.Serve(ctx, o))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", registry.DefaultAddr, "address to listen on (loopback unless --users or --insecure-open)")
	f.StringVar(&o.Root, "root", "", "directory of the registry's content (default <state dir>/registry)")
	f.StringVar(&o.Users, "users", "", "htpasswd-style file of users with bcrypt hashes (gantry registry user add writes it)")
	f.BoolVar(&o.AnonymousPull, "anonymous-pull", false, "let requests without credentials pull (GET/HEAD); pushes still need a user")
	f.StringArrayVar(&o.Immutable, "immutable", nil, "regular expression of tags that never move once set (repeatable; default versions X.Y.Z[-pre])")
	f.BoolVar(&noImmutable, "no-immutable", false, "let every tag move (not recommended)")
	f.BoolVar(&o.InsecureOpen, "insecure-open", false, "allow a non-loopback --addr without --users: anyone who reaches it may push")
	return cmd
}

func registryErr(err error) error {
	if errors.Is(err, registry.ErrInput) || errors.Is(err, registry.ErrInsecure) {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return err
}

func newRegistryUserCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage the embedded registry's users",
	}
	var usersFile string
	var fromStdin bool
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a user to the registry's users file, or change a user's password",
		Long: `Add NAME to the users file with a bcrypt hash of the password, or replace
NAME's hash if NAME is there. A running registry reads the file again on its
next request: no restart needed.

The password comes from standard input with --password-stdin (one line; the
trailing newline is dropped), or is asked for on the terminal.`,
		Example: `  gantry registry user add ci --password-stdin < ci.password
  printf %s "$REGISTRY_PASSWORD" | gantry registry user add deploy --password-stdin --users /srv/registry/users`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%w: %s needs the user's name, for example `%s ci`", errUsage, cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if usersFile == "" {
				usersFile = filepath.Join(g.registryRoot(""), "users")
			}
			pw, err := readPassword(cmd, fromStdin)
			if err != nil {
				return err
			}
			replaced, err := registry.AddUser(usersFile, args[0], pw)
			if err != nil {
				return registryErr(err)
			}
			if g.output == "json" {
				return g.printJSON(map[string]any{"user": args[0], "users_file": usersFile, "replaced": replaced})
			}
			verb := "added"
			if replaced {
				verb = "changed the password of"
			}
			fmt.Fprintf(g.stdout, "%s %s in %s\n", verb, args[0], usersFile)
			return nil
		},
	}
	add.Flags().StringVar(&usersFile, "users", "", "users file (default <state dir>/registry/users)")
	add.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from standard input")
	cmd.AddCommand(add)
	return cmd
}

func newRegistryGCCmd(g *globals) *cobra.Command {
	var o registry.GCOptions
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Remove the blobs that no manifest references",
		Long: `Remove from the registry's storage every blob that no manifest references
(distribution's mark and sweep, aware of blobs pushed by sha512 digests).
Manifests stay, tagged or not: delete one through the registry API first if
you want its blobs collected.

gc refuses to run while gantry registry serve runs on the same root: a push
in flight has uploaded blobs that no manifest references yet. Stop the server,
collect, start it again.`,
		Example: `  gantry registry gc --dry-run
  gantry registry gc --root /srv/registry --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Root = g.registryRoot(o.Root)
			res, err := registry.GC(cmd.Context(), o)
			if err != nil {
				return registryErr(err)
			}
			if g.output == "json" {
				return g.printJSON(res)
			}
			verb := "removed"
			if o.DryRun {
				verb = "dry run: would remove"
			}
			for _, d := range res.Removed {
				fmt.Fprintf(g.stdout, "%s %s\n", verb, d)
			}
			fmt.Fprintf(g.stdout, "%s %d of %d blobs (%d of %d bytes) from %s\n",
				verb, len(res.Removed), res.Blobs, res.RemovedBytes, res.Bytes, res.Root)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Root, "root", "", "directory of the registry's content (default <state dir>/registry)")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "say what would be removed, remove nothing")
	return cmd
}

// readPassword reads one line from standard input, or asks on the terminal.
func readPassword(cmd *cobra.Command, fromStdin bool) ([]byte, error) {
	in := cmd.InOrStdin()
	if !fromStdin {
		f, ok := in.(*os.File)
		if !ok || !term.IsTerminal(int(f.Fd())) {
			return nil, fmt.Errorf("%w: no terminal to ask for the password on; pass it on standard input with --password-stdin", errUsage)
		}
		fmt.Fprint(cmd.ErrOrStderr(), "password: ")
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		return pw, err
	}
	b, err := io.ReadAll(io.LimitReader(in, 4096))
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return nil, fmt.Errorf("%w: --password-stdin read no password", errUsage)
	}
	return []byte(line), nil
}
