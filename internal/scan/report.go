package scan

import (
	"encoding/json"
	"fmt"
)

// Report is the part of Trivy's JSON report (trivy image --format json,
// schema version 2) the gate reads. gantry keeps its own small structs
// rather than importing Trivy's pkg/types, which would bring most of Trivy
// into the gantry binary.
type Report struct {
	SchemaVersion int    `json:"SchemaVersion"`
	ArtifactName  string `json:"ArtifactName"`
	ArtifactType  string `json:"ArtifactType"`
	Trivy         struct {
		Version string `json:"Version"`
	} `json:"Trivy"`
	Metadata struct {
		ImageID     string   `json:"ImageID"`
		RepoDigests []string `json:"RepoDigests"`
		OS          *struct {
			Family string `json:"Family"`
			Name   string `json:"Name"`
		} `json:"OS"`
	} `json:"Metadata"`
	Results []Result `json:"Results"`
}

// Result is what Trivy found in one target of an image: its OS packages,
// or one binary's or lock file's dependencies.
type Result struct {
	Target          string          `json:"Target"`
	Class           string          `json:"Class"`
	Type            string          `json:"Type"`
	Vulnerabilities []Vulnerability `json:"Vulnerabilities"`
}

// Vulnerability is one vulnerability of one installed package.
type Vulnerability struct {
	VulnerabilityID  string `json:"VulnerabilityID"`
	PkgName          string `json:"PkgName"`
	PkgPath          string `json:"PkgPath"`
	InstalledVersion string `json:"InstalledVersion"`
	FixedVersion     string `json:"FixedVersion"`
	Status           string `json:"Status"`
	Severity         string `json:"Severity"`
	Title            string `json:"Title"`
	PrimaryURL       string `json:"PrimaryURL"`
}

// ReportSchema is the version of Trivy's report format gantry reads.
const ReportSchema = 2

// ParseReport reads Trivy's JSON report.
func ParseReport(data []byte) (*Report, error) {
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("trivy's JSON report does not parse: %w", err)
	}
	if r.SchemaVersion != ReportSchema {
		return nil, fmt.Errorf("trivy's report has schema version %d; gantry reads version %d (Trivy v0.74.0 writes it)", r.SchemaVersion, ReportSchema)
	}
	return &r, nil
}
