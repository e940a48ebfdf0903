package lint

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/url"
	"runtime/debug"
	"strings"
)

// Formats of a report.
const (
	FormatText  = "text"
	FormatJSON  = "json"
	FormatSARIF = "sarif"
)

// Write prints a report in a format: text, json or sarif.
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case FormatText:
		return r.writeText(w)
	case FormatJSON:
		return r.writeJSON(w)
	case FormatSARIF:
		return r.writeSARIF(w, toolVersion())
	}
	return fmt.Errorf("%w: format %q: use text, json or sarif", ErrInput, format)
}

// writeText prints one finding per line, file:line:col rule severity
// message [the environments whose model has it], its hint under it, and a
// summary.
func (r *Report) writeText(w io.Writer) error {
	for _, f := range r.Findings {
		env := ""
		if f.Environment != "" {
			env = " [" + strings.ReplaceAll(f.Environment, ",", ", ") + "]"
		}
		fmt.Fprintf(w, "%s:%d:%d %s %s %s%s\n", f.File, f.Line, f.Column, f.Rule, f.Severity, f.Message, env)
		if f.Hint != "" {
			fmt.Fprintf(w, "    hint: %s (%s)\n", f.Hint, f.DocURL)
		}
	}
	files := "files"
	if len(r.Files) == 1 {
		files = "file"
	}
	if len(r.Findings) == 0 {
		_, err := fmt.Fprintf(w, "%d %s linted: no findings\n", len(r.Files), files)
		return err
	}
	_, err := fmt.Fprintf(w, "%d %s linted: %s, %s, %d info; %d at or above %s\n",
		len(r.Files), files, plural(r.Count(SeverityError), "error"), plural(r.Count(SeverityWarning), "warning"), r.Count(SeverityInfo), r.Failing(), r.FailOn)
	return err
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

type jsonReport struct {
	*Report
	Summary map[string]int `json:"summary"`
	Failed  bool           `json:"failed"`
}

func (r *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonReport{Report: r, Failed: r.Failing() > 0, Summary: map[string]int{
		"error": r.Count(SeverityError), "warning": r.Count(SeverityWarning), "info": r.Count(SeverityInfo),
	}})
}

// SARIF 2.1.0, the subset GitHub code scanning reads:
// https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool               sarifTool                 `json:"tool"`
	OriginalURIBaseIDs map[string]sarifArtifactL `json:"originalUriBaseIds,omitempty"`
	Results            []sarifResult             `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version,omitempty"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifText struct {
	Text     string `json:"text"`
	Markdown string `json:"markdown,omitempty"`
}

type sarifRule struct {
	ID                   string          `json:"id"`
	Name                 string          `json:"name"`
	ShortDescription     sarifText       `json:"shortDescription"`
	FullDescription      sarifText       `json:"fullDescription"`
	HelpURI              string          `json:"helpUri"`
	Help                 sarifText       `json:"help"`
	DefaultConfiguration sarifRuleConfig `json:"defaultConfiguration"`
	Properties           sarifRuleProps  `json:"properties"`
}

type sarifRuleConfig struct {
	Level string `json:"level"`
}

type sarifRuleProps struct {
	Tags []string `json:"tags"`
	// security-severity makes GitHub rank security findings (0-10).
	SecuritySeverity string `json:"security-severity,omitempty"`
	Precision        string `json:"precision"`
	// The equivalent checks of other tools, as in Rule.
	Hadolint []string `json:"hadolint,omitempty"`
	Dockle   []string `json:"dockle,omitempty"`
	Trivy    []string `json:"trivy,omitempty"`
}

type sarifArtifactL struct {
	URI       string `json:"uri"`
	URIBaseID string `json:"uriBaseId,omitempty"`
}

type sarifResult struct {
	RuleID    string          `json:"ruleId"`
	RuleIndex int             `json:"ruleIndex"`
	Level     string          `json:"level"`
	Message   sarifText       `json:"message"`
	Locations []sarifLocation `json:"locations"`
	// partialFingerprints keep an alert the same alert across commits
	// when lines move.
	PartialFingerprints map[string]string `json:"partialFingerprints,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifactL `json:"artifactLocation"`
	Region           sarifRegion    `json:"region"`
}

type sarifRegion struct {
	StartLine   int `json:"startLine"`
	StartColumn int `json:"startColumn,omitempty"`
}

// artifact is a finding's file for SARIF: relative to the repository
// root (%SRCROOT%, where gantry lint ran), or a file:// URI for a file
// outside it.
func artifact(file string) sarifArtifactL {
	if strings.HasPrefix(file, "/") {
		return sarifArtifactL{URI: (&url.URL{Scheme: "file", Path: file}).String()}
	}
	return sarifArtifactL{URI: (&url.URL{Path: file}).String(), URIBaseID: "%SRCROOT%"}
}

// toolVersion is gantry's module version, as go build recorded it.
func toolVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return ""
}

// sarifLevel maps a severity to SARIF's levels.
func sarifLevel(s Severity) string {
	switch s {
	case SeverityError:
		return "error"
	case SeverityWarning:
		return "warning"
	}
	return "note"
}

var securitySeverity = map[Severity]string{SeverityError: "8.0", SeverityWarning: "5.0", SeverityInfo: "2.0"}

func (r *Report) writeSARIF(w io.Writer, version string) error {
	all := Rules()
	index := map[string]int{}
	driver := sarifDriver{Name: "gantry-lint", Version: version,
		InformationURI: "https://github.com/gantryhq/gantry/blob/main/docs/lint.md"}
	for i, rule := range all {
		index[rule.ID] = i
		tags := []string{string(rule.Kind)}
		props := sarifRuleProps{Precision: "high", Hadolint: rule.Hadolint, Dockle: rule.Dockle, Trivy: rule.Trivy}
		if rule.Security {
			tags = append(tags, "security")
			props.SecuritySeverity = securitySeverity[rule.Severity]
		}
		props.Tags = tags
		sr := sarifRule{
			ID: rule.ID, Name: camel(rule.Name),
			ShortDescription:     sarifText{Text: rule.Title},
			FullDescription:      sarifText{Text: rule.Title + ". How to fix: " + rule.Hint + "."},
			HelpURI:              rule.DocURL(),
			Help:                 sarifText{Text: "How to fix: " + rule.Hint + ". See " + rule.DocURL(), Markdown: fmt.Sprintf("**How to fix:** %s\n\n[%s](%s)", rule.Hint, rule.ID, rule.DocURL())},
			DefaultConfiguration: sarifRuleConfig{Level: sarifLevel(rule.Severity)},
			Properties:           props,
		}
		driver.Rules = append(driver.Rules, sr)
	}
	results := make([]sarifResult, 0, len(r.Findings))
	for _, f := range r.Findings {
		msg := f.Message
		if f.Hint != "" {
			msg += ". Fix: " + f.Hint
		}
		line := f.Line
		if line < 1 {
			line = 1
		}
		res := sarifResult{
			RuleID: f.Rule, RuleIndex: index[f.Rule], Level: sarifLevel(f.Severity),
			Message: sarifText{Text: msg},
			Locations: []sarifLocation{{PhysicalLocation: sarifPhysical{
				ArtifactLocation: artifact(f.File),
				Region:           sarifRegion{StartLine: line, StartColumn: f.Column},
			}}},
			PartialFingerprints: map[string]string{"gantryLint/v1": fingerprint(f)},
		}
		results = append(results, res)
	}
	log := sarifLog{
		Schema:  "https://json.schemastore.org/sarif-2.1.0.json",
		Version: "2.1.0",
		Runs:    []sarifRun{{Tool: sarifTool{Driver: driver}, Results: results}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}

// fingerprint identifies a finding without its line: rule, file, service
// and message.
func fingerprint(f Finding) string {
	h := fnv.New64a()
	h.Write([]byte(f.Message))
	return fmt.Sprintf("%s:%s:%s:%x", f.Rule, f.File, f.Service, h.Sum64())
}

// camel turns secret-in-env-or-arg into SecretInEnvOrArg, SARIF's style
// for rule names.
func camel(s string) string {
	var b strings.Builder
	for _, w := range strings.Split(s, "-") {
		if w == "" {
			continue
		}
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	return b.String()
}
