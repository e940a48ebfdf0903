// Command vulnapp is the program in gantry's scan test image: a static
// binary that links golang.org/x/text at v0.3.7, a version with a known
// vulnerability (CVE-2022-32149), which Trivy finds in the binary's build
// information. It is its own module so that the old version never enters
// gantry's go.mod.
//
//	vulnapp          serve on :8080: /healthz, and / answers the best language of Accept-Language
//	vulnapp check    GET :8080/healthz, exit 0 when it answers 200 (the image's health check)
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"

	"golang.org/x/text/language"
)

var supported = language.NewMatcher([]language.Tag{language.English, language.German, language.French})

func main() {
	if len(os.Args) > 1 && os.Args[1] == "check" {
		c := http.Client{Timeout: 2 * time.Second}
		r, err := c.Get("http://127.0.0.1:8080/healthz")
		if err != nil || r.StatusCode != http.StatusOK {
			fmt.Fprintln(os.Stderr, "not healthy:", err)
			os.Exit(1)
		}
		return
	}
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		tags, _, _ := language.ParseAcceptLanguage(r.Header.Get("Accept-Language"))
		tag, _, _ := supported.Match(tags...)
		fmt.Fprintln(w, tag)
	})
	srv := &http.Server{Addr: ":8080", ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
