package cli

import (
	"context"
	"io"
	"net/url"
	"sort"
)

// remoteClient is the API client the commands use when gantry talks to a
// server; nil means local mode.
type remoteClient interface {
	Get(ctx context.Context, path string, out any) error
	Post(ctx context.Context, path string, body, out any) error
	Delete(ctx context.Context, path string, out any) error
	Stream(ctx context.Context, path string, w io.Writer) error
}

// remote returns the server client when one is configured. Not wired yet:
// every command works locally.
func (g *globals) remote() (remoteClient, error) { return nil, nil }

func urlPathEscape(s string) string { return url.PathEscape(s) }

func sortStrings(s []string) { sort.Strings(s) }
