package release

import (
	"fmt"
	"strings"
)

// Changelog is the commits of a release grouped by type.
type Changelog struct {
	Version string `json:"version"`
	Tag     string `json:"tag"`
	// PreviousTag is the release before; "" for the first one.
	PreviousTag string `json:"previous_tag,omitempty"`
	// Date is the day of the release's commit, YYYY-MM-DD.
	Date     string    `json:"date"`
	Sections []Section `json:"sections"`
}

// Section is one group of a changelog.
type Section struct {
	Title   string  `json:"title"`
	Entries []Entry `json:"commits"`
}

// Entry is one commit in a changelog.
type Entry struct {
	Commit   string `json:"commit"`
	Type     string `json:"type,omitempty"`
	Scope    string `json:"scope,omitempty"`
	Subject  string `json:"subject"`
	Breaking bool   `json:"breaking,omitempty"`
	Note     string `json:"note,omitempty"`
}

// Section titles, in the order they are printed.
const (
	SectionBreaking    = "Breaking changes"
	SectionFeatures    = "Features"
	SectionFixes       = "Fixes"
	SectionPerformance = "Performance"
	SectionOther       = "Other"
)

var sectionOrder = []string{SectionBreaking, SectionFeatures, SectionFixes, SectionPerformance, SectionOther}

// Changelog lists the commits since the last release, grouped by type. When
// HEAD is itself a release, it lists what that release contains. Each commit
// is listed once: a breaking change under Breaking changes only. Merge
// commits whose message is not conventional ("Merge pull request #12")
// are left out: the commits they merge are listed.
func (r *Repo) Changelog() (*Changelog, error) {
	v, err := r.Next()
	if err != nil {
		return nil, err
	}
	commits, prev := v.Commits, v.PreviousTag
	if v.AtTag {
		w, err := r.walk(true)
		if err != nil {
			return nil, err
		}
		commits, prev = w.commits, ""
		if w.last >= 0 {
			prev = r.tags[w.last].name
		}
	}
	return makeChangelog(v, prev, commits), nil
}

func makeChangelog(v *Version, prev string, commits []Commit) *Changelog {
	cl := &Changelog{Version: v.Version.String(), Tag: v.Tag, PreviousTag: prev, Date: v.HeadTime.Format("2006-01-02")}
	groups := map[string][]Entry{}
	for _, c := range commits {
		m := c.Message
		if c.Merge && !m.Conventional() && !m.Breaking {
			continue
		}
		e := Entry{Commit: short(c.Hash), Type: m.Type, Scope: m.Scope, Subject: m.Subject, Breaking: m.Breaking}
		if m.Breaking && m.Note != m.Subject {
			e.Note = m.Note
		}
		title := SectionOther
		switch {
		case m.Breaking:
			title = SectionBreaking
		case m.Type == "feat":
			title = SectionFeatures
		case m.Type == "fix":
			title = SectionFixes
		case m.Type == "perf":
			title = SectionPerformance
		}
		groups[title] = append(groups[title], e)
	}
	cl.Sections = []Section{}
	for _, t := range sectionOrder {
		if len(groups[t]) > 0 {
			cl.Sections = append(cl.Sections, Section{Title: t, Entries: groups[t]})
		}
	}
	return cl
}

// Markdown renders the changelog for release notes and tag messages.
func (c *Changelog) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s (%s)\n", c.Version, c.Date)
	if c.PreviousTag != "" {
		fmt.Fprintf(&b, "\nChanges since %s.\n", c.PreviousTag)
	}
	if len(c.Sections) == 0 {
		b.WriteString("\nNo changes.\n")
	}
	for _, s := range c.Sections {
		fmt.Fprintf(&b, "\n### %s\n\n", s.Title)
		for _, e := range s.Entries {
			b.WriteString("- ")
			switch {
			case s.Title == SectionOther || s.Title == SectionBreaking:
				// The section does not say the type: the line does.
				if e.Type != "" {
					b.WriteString(e.Type)
					if e.Scope != "" {
						b.WriteString("(" + e.Scope + ")")
					}
					b.WriteString(": ")
				}
			case e.Scope != "":
				fmt.Fprintf(&b, "**%s:** ", e.Scope)
			}
			fmt.Fprintf(&b, "%s (%s)\n", e.Subject, e.Commit)
			if e.Note != "" {
				for _, l := range strings.Split(e.Note, "\n") {
					fmt.Fprintf(&b, "  %s\n", strings.TrimRight(l, " \t"))
				}
			}
		}
	}
	return b.String()
}
