package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/gantryhq/gantry/internal/cli"
)

func main() {
	n := flag.Int("n", 20, "")
	prof := flag.String("cpuprofile", "", "")
	flag.Parse()
	if *prof != "" {
		f, _ := os.Create(*prof)
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	args := flag.Args()
	for i := 0; i < *n; i++ {
		t0 := time.Now()
		rc := cli.Main(context.Background(), args, io.Discard, io.Discard)
		fmt.Println(rc, time.Since(t0))
	}
}
