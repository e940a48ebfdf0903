package lint

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var update = flag.Bool("update", false, "rewrite golden files")

// sampleReport lints a Dockerfile and a compose directory from testdata,
// with paths relative to testdata.
func sampleReport(t *testing.T) *Report {
	t.Helper()
	base, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Options{
		Paths:   []string{filepath.Join(base, "dockerfile/bad.root.Dockerfile"), filepath.Join(base, "compose/bad-host"), filepath.Join(base, "dockerfile/bad.secret-value.Dockerfile")},
		BaseDir: base,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) == 0 {
		t.Fatal("no findings to print")
	}
	return rep
}

// TestSARIFSchema validates the SARIF output against the SARIF 2.1.0 JSON
// schema (testdata/sarif-schema-2.1.0.json), and checks what GitHub code
// scanning reads: every rule with a helpUri to its page, every result with
// a ruleId of a listed rule and a location with a start line.
func TestSARIFSchema(t *testing.T) {
	var out bytes.Buffer
	if err := sampleReport(t).Write(&out, FormatSARIF); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	schemaDoc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("sarif-schema-2.1.0.json", schemaDoc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(inst); err != nil {
		t.Fatalf("SARIF output does not validate:\n%v\n%s", err, out.String())
	}
	// Files outside the directory gantry lint ran in become file:// URIs.
	outside, err := Run(context.Background(), Options{Paths: []string{"testdata/dockerfile/bad.root.Dockerfile"}, BaseDir: "/nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	var abs bytes.Buffer
	if err := outside.Write(&abs, FormatSARIF); err != nil {
		t.Fatal(err)
	}
	absInst, err := jsonschema.UnmarshalJSON(bytes.NewReader(abs.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(absInst); err != nil || !strings.Contains(abs.String(), `"uri": "file:///`) {
		t.Fatalf("SARIF with an absolute path: %v\n%s", err, abs.String())
	}

	// The schema is not a formality: a wrong level fails it.
	broken, err := jsonschema.UnmarshalJSON(strings.NewReader(strings.Replace(out.String(), `"level": "error"`, `"level": "fatal"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if schema.Validate(broken) == nil {
		t.Fatal("the schema accepts a result level of fatal")
	}

	var log sarifLog
	if err := json.Unmarshal(out.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	if log.Version != "2.1.0" || len(log.Runs) != 1 {
		t.Fatalf("version %q, %d runs", log.Version, len(log.Runs))
	}
	run := log.Runs[0]
	ids := map[string]int{}
	for i, r := range run.Tool.Driver.Rules {
		ids[r.ID] = i
		if r.HelpURI != DocsBase+r.ID+".md" {
			t.Errorf("%s: helpUri %q", r.ID, r.HelpURI)
		}
	}
	if len(ids) != len(Rules()) {
		t.Errorf("%d rules in SARIF, %d in gantry", len(ids), len(Rules()))
	}
	for _, res := range run.Results {
		i, ok := ids[res.RuleID]
		if !ok || i != res.RuleIndex {
			t.Errorf("result %s: ruleIndex %d, rule at %d (listed %v)", res.RuleID, res.RuleIndex, i, ok)
		}
		loc := res.Locations[0].PhysicalLocation
		if loc.Region.StartLine < 1 || loc.ArtifactLocation.URI == "" || strings.HasPrefix(loc.ArtifactLocation.URI, "/") {
			t.Errorf("result %s: location %+v", res.RuleID, loc)
		}
	}
}

// TestOutputGolden compares the text, JSON and SARIF outputs with golden
// files people read (go test -run Golden -update rewrites them).
func TestOutputGolden(t *testing.T) {
	rep := sampleReport(t)
	for _, format := range []string{FormatText, FormatJSON, FormatSARIF} {
		t.Run(format, func(t *testing.T) {
			var out bytes.Buffer
			if err := rep.Write(&out, format); err != nil {
				t.Fatal(err)
			}
			got := regexp.MustCompile(`"version": "v[^"]*",`).ReplaceAllString(out.String(), "")
			golden := filepath.Join("testdata", "output.golden."+format)
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -run Golden -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("%s output differs from %s (go test -run Golden -update rewrites it):\n%s", format, golden, got)
			}
		})
	}
}

// TestRulesDocumented: every rule has its page docs/lint/<ID>.md, which
// names its id and its equivalents, a title, a hint, a severity, and the
// mapping fields (empty only where no tool has an equivalent); docs/lint.md
// lists every rule.
func TestRulesDocumented(t *testing.T) {
	index, err := os.ReadFile("../../docs/lint.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range Rules() {
		if r.Title == "" || r.Hint == "" || r.Severity.rank() == 0 || r.Name == "" || r.Kind == "" {
			t.Errorf("%s: incomplete rule %+v", r.ID, r)
		}
		if r.Hadolint == nil && r.Dockle == nil && r.Trivy == nil && r.Kind == KindDockerfile && r.ID != "GL1007" {
			t.Errorf("%s: no hadolint, dockle or Trivy equivalent; the Dockerfile rules all have one but GL1007", r.ID)
		}
		page, err := os.ReadFile(filepath.Join("../../docs/lint", r.ID+".md"))
		if err != nil {
			t.Errorf("%s: no page: %v", r.ID, err)
			continue
		}
		text := string(page)
		if !strings.HasPrefix(text, "# "+r.ID) {
			t.Errorf("%s: the page must start with '# %s'", r.ID, r.ID)
		}
		for _, id := range append(append(append([]string{}, r.Hadolint...), r.Dockle...), r.Trivy...) {
			if !strings.Contains(text, id) {
				t.Errorf("%s: the page does not name its equivalent %s", r.ID, id)
			}
		}
		for _, section := range []string{"## Why", "## How to fix"} {
			if !strings.Contains(text, section) {
				t.Errorf("%s: the page has no %q section", r.ID, section)
			}
		}
		if !strings.Contains(string(index), "lint/"+r.ID+".md") {
			t.Errorf("%s: docs/lint.md does not link its page", r.ID)
		}
	}
}
