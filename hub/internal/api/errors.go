package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/atelier-ml/atelier/hub"
)

// Error codes beyond the classes of package hub.
const (
	codeMethod   = "method_not_allowed"
	codeInternal = "internal"
	codeUnavail  = "unavailable"
)

// status maps an error to its HTTP status and code.
func status(err error) (int, string) {
	switch {
	case errors.Is(err, hub.ErrInvalid):
		return http.StatusBadRequest, "invalid"
	case errors.Is(err, hub.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, hub.ErrConflict):
		return http.StatusConflict, "conflict"
	case errors.Is(err, hub.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, codeUnavail
	}
	return http.StatusInternalServerError, codeInternal
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, c := status(err)
	msg := err.Error()
	if code == http.StatusInternalServerError {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error; see the hub's log"
	} else {
		a.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	writeJSON(w, code, hub.ErrorBody{Error: msg, Code: c})
}
