package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/audit"
)

// BenchmarkListRoutes measures the handler alone (no TLS, no network) for
// the list routes bench/server.sh loads; go test -bench . -cpuprofile.
func BenchmarkListRoutes(b *testing.B) {
	f := newFixture(b)
	var evs []audit.Event
	for i := range 20000 {
		evs = append(evs, audit.Event{Actor: "ci", Action: "deploy", Object: "env/staging", Time: time.Now().Add(-time.Duration(i) * time.Second), Detail: map[string]string{"release": fmt.Sprint(i)}})
	}
	if err := f.srv.audit.AppendMany(context.Background(), evs); err != nil {
		b.Fatal(err)
	}
	seed(b, f)
	for _, path := range []string{"/api/v1/audit", "/api/v1/envs/staging/history", "/api/v1/envs/staging/status", "/readyz"} {
		b.Run(path, func(b *testing.B) {
			b.SetParallelism(25) // 50 clients on 2 CPUs, as bench/server.sh
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest("GET", path, nil)
					req.Header.Set("Authorization", "Bearer "+f.tokens["admin"])
					rec := httptest.NewRecorder()
					f.srv.Handler().ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Errorf("%s: %d %s", path, rec.Code, rec.Body)
						return
					}
				}
			})
		})
	}
}
