// Command mkdb writes a tiny Trivy vulnerability database for gantry's
// scan tests, with Trivy's own database packages (trivy-db, at the version
// Trivy v0.74.0 builds with), so that `trivy image --skip-db-update
// --offline-scan --cache-dir DIR` finds known vulnerabilities without the
// internet. It is its own module: trivy-db never enters gantry's go.mod.
//
//	go run . -cache-dir DIR        # writes DIR/db/trivy.db and DIR/db/metadata.json
//
// The advisories are for golang.org/x/text, which the test image's binary
// (../vulnapp) links at v0.3.7:
//
//	CVE-2022-32149        HIGH    fixed in v0.3.8 (the real advisory)
//	GANTRY-TEST-0001      MEDIUM  no fix (made up: an unfixed vulnerability)
//	GANTRY-TEST-0002      LOW     fixed in v0.4.0 (made up: below the threshold)
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	"github.com/aquasecurity/trivy-db/pkg/types"
	bolt "go.etcd.io/bbolt"
)

// bucket is where Trivy looks for Go module advisories: any bucket named
// go::<source>.
const bucket = "go::GitHub Security Advisory Go"

type advisory struct {
	id, pkg  string
	severity types.Severity
	title    string
	adv      types.Advisory
}

var advisories = []advisory{
	{id: "CVE-2022-32149", pkg: "golang.org/x/text", severity: types.SeverityHigh,
		title: "golang.org/x/text/language: ParseAcceptLanguage takes a long time to parse complex tags",
		adv:   types.Advisory{VulnerableVersions: []string{"< v0.3.8"}, PatchedVersions: []string{"v0.3.8"}, VendorIDs: []string{"GHSA-69ch-w2m2-3vjp"}}},
	{id: "GANTRY-TEST-0001", pkg: "golang.org/x/text", severity: types.SeverityMedium,
		title: "a made-up vulnerability without a fix, for gantry's scan tests",
		adv:   types.Advisory{VulnerableVersions: []string{">= v0.3.0"}}},
	{id: "GANTRY-TEST-0002", pkg: "golang.org/x/text", severity: types.SeverityLow,
		title: "a made-up low-severity vulnerability, for gantry's scan tests",
		adv:   types.Advisory{VulnerableVersions: []string{"< v0.4.0"}, PatchedVersions: []string{"v0.4.0"}}},
}

func main() {
	cacheDir := flag.String("cache-dir", "", "Trivy's cache directory; the database goes to its db/ directory")
	flag.Parse()
	if *cacheDir == "" {
		fmt.Fprintln(os.Stderr, "mkdb: -cache-dir is required")
		os.Exit(2)
	}
	if err := write(filepath.Join(*cacheDir, "db")); err != nil {
		fmt.Fprintln(os.Stderr, "mkdb:", err)
		os.Exit(1)
	}
}

func write(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := db.Init(dir); err != nil {
		return err
	}
	defer db.Close()
	dbc := db.Config{}
	err := dbc.BatchUpdate(func(tx *bolt.Tx) error {
		if err := dbc.PutDataSource(tx, bucket, types.DataSource{ID: "ghsa", Name: "GitHub Security Advisory Go",
			URL: "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Ago"}); err != nil {
			return err
		}
		for _, a := range advisories {
			if err := dbc.PutAdvisory(tx, []string{bucket, a.pkg}, a.id, a.adv); err != nil {
				return err
			}
			v := types.Vulnerability{Title: a.title, Severity: a.severity.String(),
				VendorSeverity: types.VendorSeverity{"ghsa": a.severity}}
			if err := dbc.PutVulnerability(tx, a.id, v); err != nil {
				return err
			}
			if err := dbc.PutVulnerabilityID(tx, a.id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	// NextUpdate far ahead: Trivy never calls this database stale.
	return metadata.NewClient(dir).Update(metadata.Metadata{Version: db.SchemaVersion, UpdatedAt: now, DownloadedAt: now,
		NextUpdate: now.AddDate(100, 0, 0)})
}
