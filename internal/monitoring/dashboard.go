package monitoring

import (
	"encoding/json"
)

// The gantry dashboard is built here rather than kept as a JSON file, so it
// is valid JSON by construction, and its queries are in one list that
// check reads back: every metric they name must be one gantry exports.

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

var (
	promDS = dsRef{"prometheus", "gantry-prometheus"}
	lokiDS = dsRef{"loki", "gantry-loki"}
)

type target struct {
	RefID        string `json:"refId"`
	Datasource   dsRef  `json:"datasource"`
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat,omitempty"`
	Instant      bool   `json:"instant,omitempty"`
	Format       string `json:"format,omitempty"`
}

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description,omitempty"`
	GridPos     gridPos        `json:"gridPos"`
	Datasource  *dsRef         `json:"datasource,omitempty"`
	Targets     []target       `json:"targets,omitempty"`
	FieldConfig map[string]any `json:"fieldConfig,omitempty"`
	Options     map[string]any `json:"options,omitempty"`
	Collapsed   *bool          `json:"collapsed,omitempty"`
	Panels      []panel        `json:"panels,omitempty"`
}

type variable struct {
	Name       string         `json:"name"`
	Label      string         `json:"label"`
	Type       string         `json:"type"`
	Datasource dsRef          `json:"datasource"`
	Query      map[string]any `json:"query"`
	Refresh    int            `json:"refresh"`
	IncludeAll bool           `json:"includeAll"`
	Multi      bool           `json:"multi"`
	AllValue   string         `json:"allValue,omitempty"`
	Current    map[string]any `json:"current"`
	Sort       int            `json:"sort"`
}

type dashboard struct {
	UID           string            `json:"uid"`
	Title         string            `json:"title"`
	Description   string            `json:"description"`
	Tags          []string          `json:"tags"`
	Timezone      string            `json:"timezone"`
	SchemaVersion int               `json:"schemaVersion"`
	Version       int               `json:"version"`
	Editable      bool              `json:"editable"`
	Refresh       string            `json:"refresh"`
	Time          map[string]string `json:"time"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

// query is one Prometheus query of a panel.
type query struct{ expr, legend string }

func unit(u string) map[string]any {
	return map[string]any{"defaults": map[string]any{"unit": u}, "overrides": []any{}}
}

// Dashboard is the gantry dashboard as Grafana provisions it.
func Dashboard(project string) ([]byte, error) {
	d := dashboard{
		UID: "gantry", Title: "gantry: " + project, Timezone: "browser", SchemaVersion: 39, Version: 1, Editable: true, Refresh: "30s",
		Description: "Deployments, rollbacks, health gates and the services' health from gantry server; requests, errors and latency by release from gantry proxy; the services' logs from Loki. Written by gantry monitoring init.",
		Tags:        []string{"gantry"},
		Time:        map[string]string{"from": "now-24h", "to": "now"},
	}
	d.Templating.List = []variable{{
		Name: "env", Label: "environment", Type: "query", Datasource: promDS,
		Query:   map[string]any{"query": "label_values(gantry_approvals_pending, env)", "refId": "env"},
		Refresh: 2, IncludeAll: true, Multi: true, AllValue: ".*", Sort: 1,
		Current: map[string]any{"text": "All", "value": "$__all"},
	}}
	id := 0
	y := 0
	add := func(typ, title, desc string, w, h int, fc map[string]any, opts map[string]any, qs ...query) {
		id++
		p := panel{ID: id, Type: typ, Title: title, Description: desc, Datasource: &promDS, FieldConfig: fc, Options: opts}
		for i, q := range qs {
			t := target{RefID: string(rune('A' + i)), Datasource: promDS, Expr: q.expr, LegendFormat: q.legend}
			if typ == "table" || typ == "stat" {
				t.Instant = true
				if typ == "table" {
					t.Format = "table"
				}
			}
			p.Targets = append(p.Targets, t)
		}
		// Two panels per row of 24 columns, unless one takes the whole row.
		x := 0
		if len(d.Panels) > 0 {
			last := d.Panels[len(d.Panels)-1]
			if last.Type != "row" && last.GridPos.X+last.GridPos.W+w <= 24 {
				x = last.GridPos.X + last.GridPos.W
				y = last.GridPos.Y
			}
		}
		p.GridPos = gridPos{H: h, W: w, X: x, Y: y}
		if x == 0 {
			y += h
		}
		d.Panels = append(d.Panels, p)
	}
	row := func(title string) {
		id++
		f := false
		if len(d.Panels) > 0 {
			last := d.Panels[len(d.Panels)-1]
			y = max(y, last.GridPos.Y+last.GridPos.H)
		}
		d.Panels = append(d.Panels, panel{ID: id, Type: "row", Title: title, GridPos: gridPos{H: 1, W: 24, X: 0, Y: y}, Collapsed: &f, Panels: []panel{}})
		y++
	}
	env := `env=~"$env"`

	row("Deployments")
	add("timeseries", "Deployments by result", "Deployments that reached a final state, from gantry's record (the CLI's too).", 12, 8, unit("short"), nil,
		query{`sum by (env, result) (increase(gantry_deployments_total{` + env + `}[$__rate_interval]))`, "{{env}} {{result}}"})
	add("timeseries", "Rollbacks by reason", "health_gate, analysis, interrupted, error (automatic) and manual.", 12, 8, unit("short"), nil,
		query{`sum by (env, reason) (increase(gantry_rollbacks_total{` + env + `}[$__rate_interval]))`, "{{env}} {{reason}}"})
	add("timeseries", "Deploy duration", "How long deploys take, p50 and p90 over the last hour.", 12, 8, unit("s"), nil,
		query{`histogram_quantile(0.5, sum by (env, le) (rate(gantry_deploy_duration_seconds_bucket{` + env + `}[1h])))`, "{{env}} p50"},
		query{`histogram_quantile(0.9, sum by (env, le) (rate(gantry_deploy_duration_seconds_bucket{` + env + `}[1h])))`, "{{env}} p90"})
	add("timeseries", "Health gate duration", "From a new container's start to its gate's verdict, p50 and p90 over the last hour.", 12, 8, unit("s"), nil,
		query{`histogram_quantile(0.5, sum by (env, le) (rate(gantry_health_gate_duration_seconds_bucket{` + env + `}[1h])))`, "{{env}} p50"},
		query{`histogram_quantile(0.9, sum by (env, le) (rate(gantry_health_gate_duration_seconds_bucket{` + env + `}[1h])))`, "{{env}} p90"})
	add("stat", "Approvals waiting", "Promotions waiting for approval.", 6, 4, unit("short"), nil,
		query{`sum by (env) (gantry_approvals_pending{` + env + `})`, "{{env}}"})
	add("stat", "Deploys in progress", "Deployments gantry server runs now.", 6, 4, unit("short"), nil,
		query{`sum(gantry_deployments_in_progress)`, "running"})

	row("Health")
	add("state-timeline", "Service health", "1: the serving container runs and is healthy, as gantry server's watcher sees it.", 24, 8,
		map[string]any{"defaults": map[string]any{"min": 0, "max": 1, "mappings": []any{
			map[string]any{"type": "value", "options": map[string]any{"0": map[string]any{"text": "unhealthy", "color": "red"}, "1": map[string]any{"text": "healthy", "color": "green"}}},
		}}, "overrides": []any{}}, nil,
		query{`gantry_service_healthy{` + env + `}`, "{{env}} {{service}}"})
	add("table", "Serving releases", "The release and image digest of every service, per environment.", 24, 8, nil, nil,
		query{`max by (env, service, version, digest) (gantry_release_info{` + env + `})`, ""})

	row("Requests by release")
	add("timeseries", "Request rate by release", "Requests through gantry proxy per second.", 12, 8, unit("reqps"), nil,
		query{`sum by (env, service, release) (rate(gantry_proxy_requests_total{` + env + `}[$__rate_interval]))`, "{{env}} {{service}} {{release}}"})
	add("timeseries", "Error ratio by release", "Share of requests answered 5xx, and 502s for an unreachable upstream.", 12, 8, unit("percentunit"), nil,
		query{`sum by (env, service, release) (rate(gantry_proxy_requests_total{code="5xx",` + env + `}[$__rate_interval])) / sum by (env, service, release) (rate(gantry_proxy_requests_total{` + env + `}[$__rate_interval]))`, "{{env}} {{service}} {{release}}"},
		query{`sum by (env, service, release) (rate(gantry_proxy_upstream_errors_total{` + env + `}[$__rate_interval]))`, "{{env}} {{service}} {{release}} upstream errors/s"})
	add("timeseries", "Latency p99 by release", "Time to the end of the response through gantry proxy.", 12, 8, unit("s"), nil,
		query{`histogram_quantile(0.99, sum by (env, service, release, le) (rate(gantry_proxy_request_duration_seconds_bucket{` + env + `}[$__rate_interval])))`, "{{env}} {{service}} {{release}}"})
	add("timeseries", "Traffic switches", "Switches of a route's release: deploy, rollback, abort, manual.", 12, 8, unit("short"), nil,
		query{`sum by (env, service, reason) (increase(gantry_proxy_switches_total{` + env + `}[$__rate_interval]))`, "{{env}} {{service}} {{reason}}"})

	row("gantry server")
	add("timeseries", "API requests by route", "", 12, 8, unit("reqps"), nil,
		query{`sum by (route, code) (rate(gantry_http_requests_total[$__rate_interval]))`, "{{route}} {{code}}"})
	add("timeseries", "Refused requests", "Authentication and authorization failures, by reason.", 12, 8, unit("short"), nil,
		query{`sum by (reason) (increase(gantry_auth_failures_total[$__rate_interval]))`, "{{reason}}"})

	// Logs come from Loki: LogQL, not a metric.
	row("Logs")
	id++
	d.Panels = append(d.Panels, panel{ID: id, Type: "logs", Title: "Service logs", Description: "Output of gantry's containers, shipped by Alloy.",
		GridPos: gridPos{H: 12, W: 24, X: 0, Y: y}, Datasource: &lokiDS,
		Targets: []target{{RefID: "A", Datasource: lokiDS, Expr: `{env=~"$env", service=~".+"}`}},
		Options: map[string]any{"showTime": true, "wrapLogMessage": true, "sortOrder": "Descending"}})
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// DashboardQueries lists the Prometheus queries of a dashboard (the
// panels' targets whose data source is Prometheus, and the variables'),
// by panel title.
func DashboardQueries(b []byte) (map[string][]string, error) {
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				ds := t.Datasource
				if ds.Type == "" && p.Datasource != nil {
					ds = *p.Datasource
				}
				if ds.Type == "prometheus" {
					out[p.Title] = append(out[p.Title], t.Expr)
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if q, ok := v.Query["query"].(string); ok && v.Datasource.Type == "prometheus" {
			out["variable "+v.Name] = append(out["variable "+v.Name], q)
		}
	}
	return out, nil
}
