package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
)

// Error codes of the API's error body, {"error": message, "code": code,
// "request_id": id, "exit_code": n}. exit_code is what the gantry CLI exits
// with for the same failure in local mode.
const (
	CodeBadRequest   = "bad_request"
	CodeUnknownField = "unknown_field"
	CodeTooLarge     = "too_large"
	CodeMediaType    = "unsupported_media_type"
	CodeInvalidInput = "invalid_input"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeMethod       = "method_not_allowed"
	CodeBusy         = "busy"
	CodeGateRefused  = "gate_refused"
	CodeUnreachable  = "docker_unreachable"
	CodeStarting     = "starting"
	CodeInternal     = "internal"
	// CodeCanaryNotTaken: no canary took a promote --step|--abort (its
	// gantry is gone, or it ended first).
	CodeCanaryNotTaken = "canary_not_taken"
)

// Error is the API's error body.
type Error struct {
	Message   string `json:"error"`
	Code      string `json:"code"`
	RequestID string `json:"request_id,omitempty"`
	ExitCode  int    `json:"exit_code"`
	// Field names the bad part of a request, when there is one.
	Field string `json:"field,omitempty"`
	// Status is the HTTP status; not in the body.
	Status int `json:"-"`
}

func (e *Error) Error() string { return e.Message }

func apiErr(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Exit codes, as the CLI documents them (docs/cli.md).
const (
	exitError       = 1
	exitUsage       = 2
	exitBusy        = 5
	exitUnreachable = 6
)

// toAPIError maps a domain error to its status and code.
func toAPIError(err error) *Error {
	var ae *Error
	var cfgErr *config.Error
	var locked *store.LockedError
	msg := strings.ReplaceAll(err.Error(), "invalid input: ", "")
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &locked):
		return &Error{Status: http.StatusConflict, Code: CodeBusy, Message: err.Error()}
	case errors.Is(err, deploy.ErrOverrideForbidden):
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: err.Error()}
	case errors.Is(err, deploy.ErrGateRefused):
		return &Error{Status: http.StatusConflict, Code: CodeGateRefused, Message: err.Error()}
	case errors.Is(err, deploy.ErrCanaryNotTaken):
		return &Error{Status: http.StatusConflict, Code: CodeCanaryNotTaken, Message: err.Error()}
	case errors.Is(err, runtime.ErrUnreachable):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnreachable, Message: err.Error()}
	case errors.Is(err, store.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: msg}
	case errors.As(err, &cfgErr), errors.Is(err, deploy.ErrInput), errors.Is(err, runtime.ErrImageNotFound),
		errors.Is(err, deploy.ErrNothingDeployed), errors.Is(err, auth.ErrInput):
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalidInput, Message: msg}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: err.Error()}
}

func exitFor(e *Error) int {
	switch {
	case e.Code == CodeBusy:
		return exitBusy
	case e.Code == CodeUnreachable:
		return exitUnreachable
	case e.Code == CodeCanaryNotTaken:
		return exitError
	case e.Status >= 400 && e.Status < 500:
		return exitUsage
	}
	return exitError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// Compact: indenting cost a third of a list request's time; jq and
	// the CLI format it for people.
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, reqID string, e *Error) {
	e.RequestID = reqID
	if e.ExitCode == 0 {
		e.ExitCode = exitFor(e)
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gantry"`)
	}
	writeJSON(w, e.Status, e)
}
