package registry

import "net/http"

// hookWriter lets the wrapper adjust distribution's response headers once
// the status is known and before they are sent.
type hookWriter struct {
	http.ResponseWriter
	before func(status int, h http.Header)
	wrote  bool
}

func (w *hookWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.wrote = true
		w.before(code, w.Header())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *hookWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *hookWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *hookWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
