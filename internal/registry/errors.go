package registry

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ociError is one entry of the OCI distribution error body.
type ociError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// writeError answers with the OCI error body {"errors":[...]}.
func writeError(w http.ResponseWriter, status int, code, msg string, detail any) {
	b, _ := json.Marshal(struct {
		Errors []ociError `json:"errors"`
	}{[]ociError{{Code: code, Message: msg, Detail: detail}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}
