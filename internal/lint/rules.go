package lint

import (
	"fmt"
	"sort"

	"github.com/gantryhq/gantry/internal/config"
)

// Severity is how much a finding matters: error, warning or info.
type Severity string

// The severities, from the most to the least severe.
const (
	SeverityError   Severity = config.LintError
	SeverityWarning Severity = config.LintWarning
	SeverityInfo    Severity = config.LintInfo
)

// rank orders severities: error 3, warning 2, info 1, anything else 0.
func (s Severity) rank() int {
	switch s {
	case SeverityError:
		return 3
	case SeverityWarning:
		return 2
	case SeverityInfo:
		return 1
	}
	return 0
}

// AtLeast reports whether s is as severe as t or more.
func (s Severity) AtLeast(t Severity) bool { return s.rank() >= t.rank() }

// ParseSeverity reads error, warning or info.
func ParseSeverity(s string) (Severity, error) {
	sev := Severity(s)
	if sev.rank() == 0 {
		return "", fmt.Errorf("%w: %q is not a severity; use error, warning or info", ErrInput, s)
	}
	return sev, nil
}

// Kind says what a rule reads.
type Kind string

const (
	KindDockerfile Kind = "dockerfile"
	KindCompose    Kind = "compose"
	// KindIgnore rules are about gantry-lint's own ignore comments.
	KindIgnore Kind = "ignore"
)

// DocsBase is where the rule pages (docs/lint/<ID>.md) are published; the
// SARIF output links every rule to its page there.
const DocsBase = "https://github.com/gantryhq/gantry/blob/main/docs/lint/"

// Rule is one check. Its ID never changes once published: ignores and
// configuration name it.
type Rule struct {
	ID string `json:"id"`
	// Name is a short kebab-case name, for SARIF's rule name and for people.
	Name     string   `json:"name"`
	Kind     Kind     `json:"kind"`
	Severity Severity `json:"severity"`
	Title    string   `json:"title"`
	// Hint says how to fix a finding, in one line.
	Hint string `json:"hint"`
	// Security marks rules about an attack surface rather than hygiene;
	// SARIF tags them so code scanning shows them as security alerts.
	Security bool `json:"security"`
	// The equivalent checks of other tools, where one exists: hadolint
	// (DL3002), dockle (CIS-DI-0001, DKL-DI-0006) and Trivy's
	// misconfiguration checks (DS-0002; KSV-0017 where the closest check is
	// Trivy's Kubernetes one). Empty when no tool has one.
	Hadolint []string `json:"hadolint"`
	Dockle   []string `json:"dockle"`
	Trivy    []string `json:"trivy"`
}

// DocURL is the rule's page: why it matters and how to fix it.
func (r Rule) DocURL() string { return DocsBase + r.ID + ".md" }

// The rules. GL0xxx are about ignores, GL1xxx about Dockerfiles, GL2xxx
// about the resolved compose model.
var rules = []Rule{
	{ID: "GL0001", Name: "ignore-without-reason", Kind: KindIgnore, Severity: SeverityError,
		Title: "An ignore gives no reason",
		Hint:  `say why: # gantry-lint ignore=GL1005 reason="..." before the instruction, or {rule: GL2007, reason: "..."} under the service's x-gantry-lint`},
	{ID: "GL0002", Name: "ignore-unknown-rule", Kind: KindIgnore, Severity: SeverityWarning,
		Title: "An ignore names a rule that does not exist",
		Hint:  "fix the rule id; `gantry lint --rules` lists them"},

	{ID: "GL1001", Name: "secret-in-env-or-arg", Kind: KindDockerfile, Severity: SeverityError, Security: true,
		Title:    "A secret in ENV or ARG",
		Hint:     "pass it at build time with RUN --mount=type=secret,id=NAME, and at run time as a secret file under /run/secrets",
		Hadolint: []string{"DL3064"}, Dockle: []string{"CIS-DI-0010"}, Trivy: []string{"DS-0031"}},
	{ID: "GL1002", Name: "final-user-root", Kind: KindDockerfile, Severity: SeverityError, Security: true,
		Title:    "The final stage runs as root",
		Hint:     "create a user and switch to it last: RUN useradd -r -u 10001 app, then USER 10001",
		Hadolint: []string{"DL3002"}, Dockle: []string{"CIS-DI-0001"}, Trivy: []string{"DS-0002"}},
	{ID: "GL1003", Name: "final-user-missing", Kind: KindDockerfile, Severity: SeverityWarning, Security: true,
		Title:  "The final stage sets no USER",
		Hint:   "add USER with a non-root uid to the final stage, for example USER 65532:65532",
		Dockle: []string{"CIS-DI-0001"}, Trivy: []string{"DS-0002"}},
	{ID: "GL1004", Name: "base-image-untagged", Kind: KindDockerfile, Severity: SeverityWarning,
		Title:    "A base image without a tag",
		Hint:     "name a version, and pin it by digest: FROM node:22.11-alpine@sha256:...",
		Hadolint: []string{"DL3006"}, Trivy: []string{"DS-0001"}},
	{ID: "GL1005", Name: "base-image-latest", Kind: KindDockerfile, Severity: SeverityWarning,
		Title:    "A base image tagged latest",
		Hint:     "name a version, and pin it by digest: FROM node:22.11-alpine@sha256:...",
		Hadolint: []string{"DL3007"}, Dockle: []string{"DKL-DI-0006"}, Trivy: []string{"DS-0001"}},
	{ID: "GL1006", Name: "no-healthcheck", Kind: KindDockerfile, Severity: SeverityWarning,
		Title:  "No HEALTHCHECK in the image, nor in the compose service that runs it",
		Hint:   "add HEALTHCHECK CMD [\"/app\", \"check\"] to the final stage, or a healthcheck to the compose service",
		Dockle: []string{"CIS-DI-0006"}, Trivy: []string{"DS-0026"}},
	{ID: "GL1007", Name: "build-tools-in-final-image", Kind: KindDockerfile, Severity: SeverityWarning, Security: true,
		Title: "Build tools left in the final image",
		Hint:  "build in a separate stage and COPY --from=build only the result; or remove the tools in the same RUN"},
	{ID: "GL1008", Name: "add-remote-url", Kind: KindDockerfile, Severity: SeverityWarning, Security: true,
		Title:  "ADD of a remote URL",
		Hint:   "verify what you download: ADD --checksum=sha256:... URL, or RUN curl with a checksum check",
		Dockle: []string{"CIS-DI-0009"}},
	{ID: "GL1009", Name: "add-local-files", Kind: KindDockerfile, Severity: SeverityInfo,
		Title:    "ADD of local files where COPY does",
		Hint:     "use COPY; ADD also unpacks archives, which is rarely what is meant",
		Hadolint: []string{"DL3020"}, Dockle: []string{"CIS-DI-0009"}, Trivy: []string{"DS-0005"}},
	{ID: "GL1010", Name: "apt-lists-left", Kind: KindDockerfile, Severity: SeverityWarning,
		Title:    "apt-get install leaves the package lists in the image",
		Hint:     "end the same RUN with && rm -rf /var/lib/apt/lists/*, or use RUN --mount=type=cache,target=/var/lib/apt/lists",
		Hadolint: []string{"DL3009"}, Dockle: []string{"DKL-DI-0005"}},
	{ID: "GL1011", Name: "apk-cache-left", Kind: KindDockerfile, Severity: SeverityWarning,
		Title:    "apk add without --no-cache leaves the package index in the image",
		Hint:     "apk add --no-cache PACKAGE",
		Hadolint: []string{"DL3019"}, Dockle: []string{"DKL-DI-0004"}, Trivy: []string{"DS-0025"}},
	{ID: "GL1012", Name: "pip-cache-left", Kind: KindDockerfile, Severity: SeverityWarning,
		Title:    "pip install without --no-cache-dir leaves pip's cache in the image",
		Hint:     "pip install --no-cache-dir ..., or ENV PIP_NO_CACHE_DIR=1, or RUN --mount=type=cache,target=/root/.cache/pip",
		Hadolint: []string{"DL3042"}},
	{ID: "GL1013", Name: "rpm-cache-left", Kind: KindDockerfile, Severity: SeverityWarning,
		Title:    "yum, dnf or zypper install without cleaning its cache",
		Hint:     "end the same RUN with && yum clean all (dnf clean all, zypper clean)",
		Hadolint: []string{"DL3032", "DL3040", "DL3036"}, Trivy: []string{"DS-0015", "DS-0019", "DS-0020"}},

	{ID: "GL2001", Name: "privileged", Kind: KindCompose, Severity: SeverityError, Security: true,
		Title: "A privileged service",
		Hint:  "remove privileged: true; add only the capabilities it needs with cap_add",
		Trivy: []string{"KSV-0017"}},
	{ID: "GL2002", Name: "host-network", Kind: KindCompose, Severity: SeverityError, Security: true,
		Title: "A service on the host's network",
		Hint:  "remove network_mode: host; publish the ports it serves on 127.0.0.1 or join a compose network",
		Trivy: []string{"KSV-0009"}},
	{ID: "GL2003", Name: "host-pid", Kind: KindCompose, Severity: SeverityError, Security: true,
		Title: "A service in the host's PID namespace",
		Hint:  "remove pid: host",
		Trivy: []string{"KSV-0010"}},
	{ID: "GL2004", Name: "docker-socket", Kind: KindCompose, Severity: SeverityError, Security: true,
		Title: "The Docker socket mounted into a service",
		Hint:  "do not mount docker.sock; if the service must talk to Docker, give it a socket proxy that allows only what it needs",
		Trivy: []string{"KSV-0006"}},
	{ID: "GL2005", Name: "secret-in-environment", Kind: KindCompose, Severity: SeverityError, Security: true,
		Title:  "A secret passed through environment",
		Hint:   "declare it under secrets: and read it from /run/secrets/NAME (many images read NAME_FILE=/run/secrets/NAME)",
		Dockle: []string{"CIS-DI-0010"}},
	{ID: "GL2006", Name: "writable-root-fs", Kind: KindCompose, Severity: SeverityInfo, Security: true,
		Title: "The root filesystem is writable",
		Hint:  "set read_only: true, with tmpfs: [/tmp] and volumes for what the service writes",
		Trivy: []string{"KSV-0014"}},
	{ID: "GL2007", Name: "port-on-all-interfaces", Kind: KindCompose, Severity: SeverityWarning, Security: true,
		Title: "A port published on every interface (0.0.0.0)",
		Hint:  `publish on loopback ("127.0.0.1:8080:8080") behind a proxy, or drop the port for an internal service`},
	{ID: "GL2008", Name: "healthcheck-disabled", Kind: KindCompose, Severity: SeverityWarning,
		Title:  "The service's health check is disabled",
		Hint:   "remove healthcheck.disable (or test: [NONE]), or give gantry a probe for it under environments.ENV.health.probes",
		Dockle: []string{"CIS-DI-0006"}, Trivy: []string{"DS-0026"}},
	{ID: "GL2009", Name: "floating-tag-in-protected-env", Kind: KindCompose, Severity: SeverityError,
		Title:    "A floating image tag in a protected environment",
		Hint:     "deploy a version or a digest (image: shop/web:1.4.0, or gantry deploy --release 1.4.0, which pins digests)",
		Hadolint: []string{"DL3007"}, Dockle: []string{"DKL-DI-0006"}, Trivy: []string{"KSV-0013"}},
}

var rulesByID = func() map[string]Rule {
	m := make(map[string]Rule, len(rules))
	for _, r := range rules {
		m[r.ID] = r
	}
	return m
}()

// Rules lists every rule, by id.
func Rules() []Rule {
	out := append([]Rule(nil), rules...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// RuleByID returns the rule with that id.
func RuleByID(id string) (Rule, bool) {
	r, ok := rulesByID[id]
	return r, ok
}
