package scoring

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// InferRequest is a decoded Open Inference Protocol v2 infer request.
type InferRequest struct {
	// ID is echoed in the response.
	ID string
	// Inputs in request order; not yet validated against a signature.
	Inputs []Tensor
	// Outputs names the requested outputs; empty means all.
	Outputs []string
}

// DecodeInferRequest decodes a v2 JSON infer request:
//
//	{"id": "...", "parameters": {...},
//	 "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
//	             "parameters": {...}, "data": [1, 2, 3, 4, 5, 6]}],
//	 "outputs": [{"name": "y", "parameters": {...}}]}
//
// data may be flat or nested; nested data must be rectangular and match
// shape. Parameters are accepted and ignored, except binary_data_size
// (the binary tensor extension is not supported). Unknown keys are skipped.
// Errors wrap ErrInvalidInput (or ErrUnsupported) and say where.
func DecodeInferRequest(body []byte) (*InferRequest, error) {
	s := &scanner{b: body}
	req := &InferRequest{}
	sawInputs := false
	err := s.object(func(key string) error {
		switch key {
		case "id":
			if s.peek() == 'n' && s.literal("null") {
				return nil
			}
			id, err := s.str()
			req.ID = id
			return err
		case "inputs":
			sawInputs = true
			return s.array(func() error {
				t, err := decodeInput(s, len(req.Inputs))
				if err != nil {
					return err
				}
				req.Inputs = append(req.Inputs, t)
				return nil
			})
		case "outputs":
			return s.array(func() error {
				name := ""
				err := s.object(func(k string) error {
					if k == "name" {
						var err error
						name, err = s.str()
						return err
					}
					return s.skip(1)
				})
				if err != nil {
					return err
				}
				if name == "" {
					return s.errorf("requested output %d has no name", len(req.Outputs))
				}
				req.Outputs = append(req.Outputs, name)
				return nil
			})
		default:
			return s.skip(1)
		}
	})
	if err != nil {
		return nil, err
	}
	if err := s.end(); err != nil {
		return nil, err
	}
	if !sawInputs {
		return nil, fmt.Errorf("%w: request has no \"inputs\"", ErrInvalidInput)
	}
	return req, nil
}

func decodeInput(s *scanner, idx int) (Tensor, error) {
	var (
		t                 Tensor
		dtName            string
		haveShape, haveDT bool
		dataAt            = -1
		dims              []int64
		decoded           bool
	)
	label := func() string {
		if t.Name == "" {
			return fmt.Sprintf("#%d", idx)
		}
		return t.Name
	}
	// decodeData reads data at s (positioned at it) once datatype and
	// shape are known.
	decodeData := func() error {
		dt, err := ParseDataType(dtName)
		if err != nil {
			return fmt.Errorf("input %q: %w", label(), err)
		}
		n := numElements(t.Shape)
		if n < 0 {
			return fmt.Errorf("input %q: %w: shape %s has a negative or too large dimension", label(), ErrInvalidInput, shapeString(t.Shape))
		}
		t.DataType = dt
		t.Data, dims, err = scanTensorData(s, dt, n)
		if err != nil {
			return fmt.Errorf("input %q: data: %w", label(), err)
		}
		decoded = true
		return nil
	}
	err := s.object(func(key string) error {
		switch key {
		case "name":
			var err error
			t.Name, err = s.str()
			return err
		case "datatype":
			var err error
			dtName, err = s.str()
			haveDT = true
			return err
		case "shape":
			haveShape = true
			t.Shape = []int64{}
			return s.array(func() error {
				v, err := s.int(64)
				if err != nil {
					return err
				}
				t.Shape = append(t.Shape, v)
				return nil
			})
		case "parameters":
			return s.object(func(k string) error {
				if k == "binary_data_size" {
					return fmt.Errorf("input %d: %w: binary tensor data (binary_data_size) is not supported; send JSON data", idx, ErrUnsupported)
				}
				return s.skip(2)
			})
		case "data":
			s.ws()
			dataAt = s.i
			if haveDT && haveShape {
				// The usual order: decode in place, in one pass.
				return decodeData()
			}
			// The datatype or shape comes after data: come back later.
			return s.skip(1)
		default:
			return s.skip(1)
		}
	})
	if err != nil {
		return t, err
	}
	switch {
	case t.Name == "":
		return t, fmt.Errorf("input %s: %w: no \"name\"", label(), ErrInvalidInput)
	case !haveDT:
		return t, fmt.Errorf("input %q: %w: no \"datatype\"", label(), ErrInvalidInput)
	case !haveShape:
		return t, fmt.Errorf("input %q: %w: no \"shape\"", label(), ErrInvalidInput)
	case dataAt < 0:
		return t, fmt.Errorf("input %q: %w: no \"data\"", label(), ErrInvalidInput)
	}
	if !decoded {
		end := s.i
		s.i = dataAt
		err := decodeData()
		s.i = end
		if err != nil {
			return t, err
		}
	}
	n := numElements(t.Shape)
	data := t.Data
	if len(dims) > 1 && !slices.Equal(dims, t.Shape) {
		return t, fmt.Errorf("input %q: %w: nested data has shape %s, \"shape\" says %s", label(), ErrInvalidInput, shapeString(dims), shapeString(t.Shape))
	}
	if got := dataLen(data); got != n {
		return t, fmt.Errorf("input %q: %w: %d data elements, shape %s needs %d", label(), ErrInvalidInput, got, shapeString(t.Shape), n)
	}
	return t, nil
}

// AppendInferRequest appends a v2 JSON infer request for inputs to b: the
// client side of DecodeInferRequest. Float NaN and ±Inf are written as the
// strings "NaN", "Infinity" and "-Infinity".
func AppendInferRequest(b []byte, id string, inputs []Tensor) []byte {
	b = append(b, '{')
	if id != "" {
		b = append(b, `"id":`...)
		b = appendString(b, id)
		b = append(b, ',')
	}
	b = append(b, `"inputs":`...)
	b = appendTensors(b, inputs)
	return append(b, '}')
}

func appendTensors(b []byte, ts []Tensor) []byte {
	b = append(b, '[')
	for i, t := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendString(b, t.Name)
		b = append(b, `,"datatype":"`...)
		b = append(b, t.DataType.String()...)
		b = append(b, `","shape":`...)
		b = appendShape(b, t.Shape)
		b = append(b, `,"data":`...)
		b = appendData(b, t.Data, 0, dataLen(t.Data))
		b = append(b, '}')
	}
	return append(b, ']')
}

// AppendInferResponse appends the v2 JSON response for outputs to b.
// Float NaN and ±Inf are written as the strings "NaN", "Infinity" and
// "-Infinity".
func AppendInferResponse(b []byte, model, version, id string, outputs []Tensor) []byte {
	b = append(b, `{"model_name":`...)
	b = appendString(b, model)
	b = append(b, `,"model_version":`...)
	b = appendString(b, version)
	if id != "" {
		b = append(b, `,"id":`...)
		b = appendString(b, id)
	}
	b = append(b, `,"outputs":`...)
	b = appendTensors(b, outputs)
	return append(b, '}')
}

func appendShape(b []byte, shape []int64) []byte {
	b = append(b, '[')
	for i, d := range shape {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d, 10)
	}
	return append(b, ']')
}

// appendNested appends data shaped as nested arrays (a bare value for a
// scalar).
func appendNested(b []byte, data any, shape []int64) []byte {
	if len(shape) == 0 {
		return appendElems(b, data, 0, 1)
	}
	var rec func(b []byte, dim, off int) []byte
	rec = func(b []byte, dim, off int) []byte {
		n := int(shape[dim])
		if dim == len(shape)-1 {
			return appendData(b, data, off, off+n)
		}
		stride := numElements(shape[dim+1:])
		b = append(b, '[')
		for i := range n {
			if i > 0 {
				b = append(b, ',')
			}
			b = rec(b, dim+1, off+i*stride)
		}
		return append(b, ']')
	}
	return rec(b, 0, 0)
}

// appendData appends data[lo:hi] as a flat JSON array.
func appendData(b []byte, data any, lo, hi int) []byte {
	b = append(b, '[')
	b = appendElems(b, data, lo, hi)
	return append(b, ']')
}

func appendElems(b []byte, data any, lo, hi int) []byte {
	switch v := data.(type) {
	case []float32:
		for i := lo; i < hi; i++ {
			b = appendFloat(b, float64(v[i]), 32, i > lo)
		}
	case []float64:
		for i := lo; i < hi; i++ {
			b = appendFloat(b, v[i], 64, i > lo)
		}
	case []int8:
		b = appendInts(b, v[lo:hi])
	case []int16:
		b = appendInts(b, v[lo:hi])
	case []int32:
		b = appendInts(b, v[lo:hi])
	case []int64:
		b = appendInts(b, v[lo:hi])
	case []uint8:
		b = appendUints(b, v[lo:hi])
	case []uint16:
		b = appendUints(b, v[lo:hi])
	case []uint32:
		b = appendUints(b, v[lo:hi])
	case []uint64:
		b = appendUints(b, v[lo:hi])
	case []bool:
		for i := lo; i < hi; i++ {
			if i > lo {
				b = append(b, ',')
			}
			b = strconv.AppendBool(b, v[i])
		}
	}
	return b
}

func appendFloat(b []byte, f float64, bits int, comma bool) []byte {
	if comma {
		b = append(b, ',')
	}
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bits)
}

func appendInts[T int8 | int16 | int32 | int64](b []byte, v []T) []byte {
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(x), 10)
	}
	return b
}

func appendUints[T uint8 | uint16 | uint32 | uint64](b []byte, v []T) []byte {
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(x), 10)
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\ufffd"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// appendError appends {"error": msg}.
func appendError(b []byte, msg string) []byte {
	b = append(b, `{"error":`...)
	b = appendString(b, msg)
	return append(b, '}')
}
