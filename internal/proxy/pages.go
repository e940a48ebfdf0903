package proxy

import (
	"fmt"
	"html"
	"net/http"
	"strconv"
)

// ErrorHeader names, on every answer the proxy gives itself, why it did:
// maintenance, no-route, no-release, body-too-large, upstream-unreachable.
// Clients and tests tell the proxy's 502 or 503 from an application's by it.
const ErrorHeader = "X-Gantry-Proxy"

// page renders a small HTML page: a title and a sentence saying what
// happened and what to do.
func page(status int, title, text string) []byte {
	return fmt.Appendf(nil, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>%d %s</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}small{color:#777}</style>
</head><body><h1>%d %s</h1><p>%s</p><p><small>gantry proxy</small></p></body></html>
`, status, html.EscapeString(title), status, html.EscapeString(title), html.EscapeString(text))
}

func writePage(w http.ResponseWriter, status int, reason string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set(ErrorHeader, reason)
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "30")
	}
	w.WriteHeader(status)
	w.Write(body)
}

func maintenancePage(env, message string) []byte {
	if message == "" {
		message = fmt.Sprintf("This site (%s) is down for maintenance. Please try again in a few minutes.", env)
	}
	return page(http.StatusServiceUnavailable, "Down for maintenance", message)
}

func noReleasePage(env, service string) []byte {
	return page(http.StatusServiceUnavailable, "Service Unavailable",
		fmt.Sprintf("No release of %s is routed in %s yet: deploy it (gantry deploy %s) and the proxy sends traffic to it once it is healthy.", service, env, env))
}

func badGatewayPage(env, service, release string) []byte {
	if release == "" {
		release = "its current release"
	} else {
		release = "release " + release
	}
	return page(http.StatusBadGateway, "Bad Gateway",
		fmt.Sprintf("%s in %s (%s) is not answering: the proxy could not reach it or it broke the connection. The failure is counted in gantry_proxy_upstream_errors_total; `gantry status %s` shows the service's state.", service, env, release, env))
}

var notFoundPage = page(http.StatusNotFound, "Not Found", "No route of this proxy answers this host and path.")

func tooLargePage(max int64) []byte {
	return page(http.StatusRequestEntityTooLarge, "Content Too Large",
		fmt.Sprintf("The request body is larger than this site accepts (%d bytes at most).", max))
}
