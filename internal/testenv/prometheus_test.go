package testenv

import (
	"net/http"
	"testing"
)

func TestStartPrometheusAndAlertmanager(t *testing.T) {
	p := StartPrometheus(t, "global: { scrape_interval: 1s }\n")
	a := StartAlertmanager(t, "route: { receiver: none }\nreceivers: [ { name: none } ]\n")
	for _, u := range []string{p.URL + "/api/v1/status/buildinfo", a.URL + "/api/v2/status"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", u, resp.StatusCode)
		}
	}
	p.Stop()
	if _, err := http.Get(p.URL + "/-/ready"); err == nil {
		t.Error("Prometheus still answers after Stop")
	}
}
