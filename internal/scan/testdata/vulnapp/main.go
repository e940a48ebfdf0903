// Command vulnapp is the program in gantry's scan test image: a static
// binary that links golang.org/x/text at v0.3.7, a version with a known
// vulnerability (CVE-2022-32149), which Trivy finds in the binary's build
// information. It is its own module so that the old version never enters
// gantry's go.mod.
package main

import (
	"fmt"
	"os"

	"golang.org/x/text/language"
)

func main() {
	tag := "en"
	if len(os.Args) > 1 {
		tag = os.Args[1]
	}
	t, err := language.Parse(tag)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(t)
}
