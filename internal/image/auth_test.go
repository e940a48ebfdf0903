package image

import (
	"net/http"
	"strings"
	"testing"
)

func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	cases := []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:5000", true},
		{"127.3.2.1", true},
		{"localhost:5000", true},
		{"[::1]:5000", true},
		{"10.0.0.5:5000", false},
		{"192.168.1.2", false},
		{"ghcr.io", false},
		{"localhost.example.com", false},
	}
	rt := loopbackHTTPOnly{roundTripFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})}
	for _, c := range cases {
		if loopback(c.host) != c.ok {
			t.Errorf("loopback(%q) = %v", c.host, !c.ok)
		}
		req, _ := http.NewRequest("GET", "http://"+c.host+"/v2/", nil)
		_, err := rt.RoundTrip(req)
		if (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), "only to registries on 127.0.0.1")) {
			t.Errorf("http://%s: %v", c.host, err)
		}
		req, _ = http.NewRequest("GET", "https://"+c.host+"/v2/", nil)
		if _, err := rt.RoundTrip(req); err != nil {
			t.Errorf("https://%s refused: %v", c.host, err)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
