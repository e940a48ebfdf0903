// Command gantrycopy copies an image that is in a registry to another
// repository with gantry's internal/image.Copy, the way gantry promotes a
// release. bench/push.sh times it against crane copy and docker pull + tag
// + push; it exists because gantry has no copy command of its own yet.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/image"
)

func main() {
	src := flag.String("src", "", "the image to copy, best by digest: 127.0.0.1:5000/shop/web@sha256:...")
	dst := flag.String("dst", "", "the repository to copy it to: 127.0.0.1:5000/shop/web-prod")
	tag := flag.String("tag", "", "a tag to set in -dst (optional)")
	flag.Parse()
	if *src == "" || *dst == "" {
		fmt.Fprintln(os.Stderr, "usage: gantrycopy -src REF -dst REPO [-tag TAG]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var tags []string
	if *tag != "" {
		tags = []string{*tag}
	}
	// The same options gantry push takes from a gantry.yaml without
	// credentials: version tags never move.
	opts := image.PushOptionsFor(config.Registry{ImmutableTags: config.DefaultImmutableTags})
	res, err := image.Copy(ctx, *src, *dst, tags, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gantrycopy:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(res)
}
