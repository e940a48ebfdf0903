package notify

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/gantryhq/gantry/internal/store"
)

// alertmanager posts alerts to an Alertmanager's v2 API, which routes,
// groups, repeats and silences them itself.
type alertmanager struct {
	url    string
	client *http.Client
}

// amAlert is a postable alert of the v2 API.
func amAlert(a *store.Alert, kind string) model.Alert {
	labels := model.LabelSet{"alertname": model.LabelValue(a.Name), "severity": model.LabelValue(a.Severity), "source": "gantry"}
	for k, v := range map[string]string{"project": a.Project, "env": a.Env, "service": a.Service, "release": a.Release} {
		if v != "" {
			labels[model.LabelName(k)] = model.LabelValue(v)
		}
	}
	ann := model.LabelSet{"summary": model.LabelValue(a.Summary), "gantry_alert_id": model.LabelValue(strconv.FormatInt(a.ID, 10))}
	if a.Description != "" {
		ann["description"] = model.LabelValue(a.Description)
	}
	if a.DeploymentID != 0 {
		ann["deployment"] = model.LabelValue(strconv.FormatInt(a.DeploymentID, 10))
	}
	out := model.Alert{Labels: labels, Annotations: ann, StartsAt: a.StartsAt}
	if kind == KindResolved && a.EndsAt != nil {
		out.EndsAt = *a.EndsAt
	}
	return out
}

func (am *alertmanager) Notify(ctx context.Context, a *store.Alert, kind string) (bool, error) {
	if kind == KindResolved && a.EndsAt == nil {
		t := time.Now()
		a.EndsAt = &t
	}
	return postJSON(ctx, am.client, strings.TrimSuffix(am.url, "/")+"/api/v2/alerts", []model.Alert{amAlert(a, kind)})
}
