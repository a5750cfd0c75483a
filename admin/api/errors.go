package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/aviary-im/aviary/storage"
)

// APIError is the one shape every failed API call answers with:
// {"error": {"status": 404, "message": "..."}}.
type APIError struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
	err     error
}

func (e *APIError) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Message) }
func (e *APIError) Unwrap() error { return e.err }

func errBadRequest(format string, a ...any) *APIError {
	return &APIError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, a...)}
}
func errUnauthorized(msg string) *APIError {
	return &APIError{Status: http.StatusUnauthorized, Message: msg}
}
func errForbidden(msg string) *APIError { return &APIError{Status: http.StatusForbidden, Message: msg} }
func errNotFound(msg string) *APIError  { return &APIError{Status: http.StatusNotFound, Message: msg} }
func errInternal(err error) *APIError {
	return &APIError{Status: http.StatusInternalServerError, Message: "internal error", err: err}
}

// toAPIError maps backend errors in one place.
func toAPIError(err error) *APIError {
	var ae *APIError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, storage.ErrNotFound):
		return &APIError{Status: http.StatusNotFound, Message: "not found", err: err}
	case errors.Is(err, storage.ErrExists):
		return &APIError{Status: http.StatusConflict, Message: "already exists", err: err}
	case errors.Is(err, storage.ErrUnavailable):
		return &APIError{Status: http.StatusServiceUnavailable, Message: "database unavailable", err: err}
	}
	return errInternal(err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *APIError) {
	writeJSON(w, e.Status, map[string]*APIError{"error": e})
}
