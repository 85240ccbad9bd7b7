package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/atelier-ml/atelier/hub"
)

// readBody reads the whole body, refusing more than limit bytes with an
// error wrapping hub.ErrTooLarge.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, fmt.Errorf("request body exceeds the limit of %d bytes: %w", limit, hub.ErrTooLarge)
	}
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return b, nil
}

// decodeJSON decodes a JSON object body of at most limit bytes into v.
// Unknown fields, trailing data and type mismatches are errors naming the
// field and byte offset; all wrap hub.ErrInvalid (or hub.ErrTooLarge).
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	b, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	return unmarshal(b, v)
}

func unmarshal(b []byte, v any) error {
	if len(b) == 0 {
		return fmt.Errorf("empty request body: expected a JSON object: %w", hub.ErrInvalid)
	}
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, dec.InputOffset())
	}
	if dec.More() {
		return fmt.Errorf("malformed JSON at offset %d: unexpected data after the object: %w", dec.InputOffset(), hub.ErrInvalid)
	}
	return nil
}

func jsonError(err error, offset int64) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("malformed JSON at offset %d: %s: %w", se.Offset, se.Error(), hub.ErrInvalid)
	case errors.As(err, &te):
		return fmt.Errorf("JSON field %q at offset %d: expected %s, got %s: %w", te.Field, te.Offset, te.Type, te.Value, hub.ErrInvalid)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return fmt.Errorf("malformed JSON at offset %d: unexpected end of input: %w", offset, hub.ErrInvalid)
	}
	return fmt.Errorf("malformed JSON at offset %d: %s: %w", offset, err.Error(), hub.ErrInvalid)
}
