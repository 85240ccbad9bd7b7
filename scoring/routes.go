package scoring

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
)

// wireSpec is a tensor in v2 model metadata.
type wireSpec struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func wireSpecs(l []TensorSpec) []wireSpec {
	out := make([]wireSpec, len(l))
	for i, t := range l {
		out[i] = wireSpec{Name: t.Name, Datatype: t.DataType.String(), Shape: t.Shape}
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSONBytes(w, code, b)
}

// serverMetadata: GET /v2.
func (s *Server) serverMetadata(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"name": "atelier-scoring", "version": s.cfg.Version, "extensions": []string{}})
}

// modelMetadata: GET /v2/models/{model}[/versions/{version}].
func (s *Server) modelMetadata(w http.ResponseWriter, r *http.Request) {
	name, version := r.PathValue("model"), r.PathValue("version")
	info, err := s.reg.Model(name)
	if err == nil && version != "" && !slices.Contains(info.Versions, version) {
		err = fmt.Errorf("model %q version %q: %w", name, version, ErrModelNotFound)
	}
	if err != nil {
		s.unknownModel.Add(1)
		s.fail(w, err)
		return
	}
	sig, versions := info.Sig, info.Versions
	if version != "" {
		v, err := s.reg.Acquire(name, version)
		if err != nil {
			s.fail(w, err)
			return
		}
		sig, versions = v.sig, []string{version}
		v.Release()
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name":     name,
		"versions": versions,
		"platform": "onnxruntime_onnx",
		"inputs":   wireSpecs(sig.Inputs),
		"outputs":  wireSpecs(sig.Outputs),
	})
}

// modelReady: GET /v2/models/{model}[/versions/{version}]/ready. A loaded
// version is ready: versions become visible only after their warm-up.
func (s *Server) modelReady(w http.ResponseWriter, r *http.Request) {
	v, err := s.acquire(r, r.PathValue("model"))
	if err != nil {
		s.fail(w, err)
		return
	}
	v.Release()
	writeJSON(w, http.StatusOK, map[string]any{"name": v.Model, "version": v.Version, "ready": !s.stopped.Load()})
}

// score: POST /score and /score/{model}, Azure-ML style. The body is
// {"data": X} for a single-input model, where X is a nested array (one
// example without the batch dimension is accepted too), or named inputs:
// {"data": {"a": A, "b": B}} or {"a": A, "b": B}. The response maps each
// output name to a nested array.
func (s *Server) score(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("model")
	if name == "" {
		models := s.reg.Models()
		switch len(models) {
		case 0:
			s.fail(w, fmt.Errorf("score: %w: no model is loaded", ErrModelNotFound))
			return
		case 1:
			name = models[0].Name
		default:
			names := make([]string, len(models))
			for i, m := range models {
				names[i] = m.Name
			}
			s.fail(w, fmt.Errorf("score: %w: %d models are loaded (%v); POST /score/{model}", ErrInvalidInput, len(models), names))
			return
		}
	}
	v, err := s.acquire(r, name)
	if err != nil {
		s.fail(w, err)
		return
	}
	defer v.Release()
	bp, err := s.readBody(w, r)
	if err != nil {
		v.metrics.requests[outcomeInvalid].Add(1)
		s.fail(w, err)
		return
	}
	inputs, err := decodeScore(*bp, v.sig)
	putBuf(bp)
	if err != nil {
		v.metrics.requests[outcomeInvalid].Add(1)
		s.fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	outs, err := v.Infer(ctx, inputs)
	cancel()
	if err != nil {
		s.fail(w, err)
		return
	}
	b := []byte{'{'}
	for i, t := range outs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, t.Name)
		b = append(b, ':')
		b = appendNested(b, t.Data, t.Shape)
	}
	writeJSONBytes(w, http.StatusOK, append(b, '}'))
}

// decodeScore decodes a /score body into tensors whose shapes come from
// the nesting of the arrays.
func decodeScore(body []byte, sig Signature) ([]Tensor, error) {
	s := &scanner{b: body}
	var inputs []Tensor
	named := func(key string) error {
		i := sig.InputIndex(key)
		if i < 0 {
			return fmt.Errorf("score: %q: %w: unknown input; the model's inputs are %s", key, ErrInvalidInput, sig.inputNames())
		}
		t, err := scoreTensor(s, sig.Inputs[i])
		if err != nil {
			return err
		}
		inputs = append(inputs, t)
		return nil
	}
	err := s.object(func(key string) error {
		if key == "data" && sig.InputIndex("data") < 0 {
			if s.peek() == '{' {
				return s.object(named)
			}
			if len(sig.Inputs) != 1 {
				return fmt.Errorf("score: %w: the model has %d inputs %s; send {\"data\": {\"NAME\": [...], ...}}", ErrInvalidInput, len(sig.Inputs), sig.inputNames())
			}
			t, err := scoreTensor(s, sig.Inputs[0])
			if err != nil {
				return err
			}
			inputs = append(inputs, t)
			return nil
		}
		return named(key)
	})
	if err != nil {
		return nil, err
	}
	if err := s.end(); err != nil {
		return nil, err
	}
	return inputs, nil
}

func scoreTensor(s *scanner, spec TensorSpec) (Tensor, error) {
	data, dims, err := scanTensorData(s, spec.DataType, 0)
	if err != nil {
		return Tensor{}, fmt.Errorf("input %q: %w", spec.Name, err)
	}
	// One example without the batch dimension.
	if len(dims) == len(spec.Shape)-1 && spec.Shape[0] == Dynamic {
		dims = append([]int64{1}, dims...)
	}
	return Tensor{Name: spec.Name, DataType: spec.DataType, Shape: dims, Data: data}, nil
}

// swagger: GET /swagger.json, an OpenAPI 2.0 document with one
// POST /score/{model} operation per model.
func (s *Server) swagger(w http.ResponseWriter, r *http.Request) {
	paths := map[string]any{}
	defs := map[string]any{}
	for _, m := range s.reg.Models() {
		in, out := m.Name+"_input", m.Name+"_output"
		defs[in] = objectSchema(m.Sig.Inputs)
		defs[out] = objectSchema(m.Sig.Outputs)
		paths["/score/"+m.Name] = map[string]any{"post": map[string]any{
			"operationId": "score_" + m.Name,
			"summary":     fmt.Sprintf("Score model %s (version %s)", m.Name, m.Current),
			"parameters": []any{map[string]any{
				"name": "body", "in": "body", "required": true,
				"schema": map[string]any{"$ref": "#/definitions/" + in},
			}},
			"responses": map[string]any{
				"200":     map[string]any{"description": "outputs by name", "schema": map[string]any{"$ref": "#/definitions/" + out}},
				"default": map[string]any{"description": "error", "schema": map[string]any{"$ref": "#/definitions/error"}},
			},
		}}
	}
	defs["error"] = map[string]any{"type": "object", "properties": map[string]any{"error": map[string]any{"type": "string"}}}
	doc := map[string]any{
		"swagger":     "2.0",
		"info":        map[string]any{"title": "Atelier scoring endpoint", "version": s.cfg.Version},
		"schemes":     []string{"http"},
		"consumes":    []string{"application/json"},
		"produces":    []string{"application/json"},
		"paths":       paths,
		"definitions": defs,
	}
	if len(s.keys) > 0 {
		doc["securityDefinitions"] = map[string]any{"Bearer": map[string]any{"type": "apiKey", "name": "Authorization", "in": "header", "description": "Bearer KEY"}}
		doc["security"] = []any{map[string]any{"Bearer": []string{}}}
	}
	writeJSON(w, http.StatusOK, doc)
}

func objectSchema(specs []TensorSpec) map[string]any {
	props := map[string]any{}
	req := []string{}
	for _, t := range specs {
		var sch map[string]any = map[string]any{"type": t.DataType.JSONType()}
		for i := len(t.Shape) - 1; i >= 0; i-- {
			a := map[string]any{"type": "array", "items": sch}
			if t.Shape[i] >= 0 {
				a["minItems"], a["maxItems"] = t.Shape[i], t.Shape[i]
			}
			sch = a
		}
		sch["x-datatype"] = t.DataType.String()
		sch["x-shape"] = t.Shape
		props[t.Name] = sch
		req = append(req, t.Name)
	}
	return map[string]any{"type": "object", "properties": props, "required": req}
}

// metrics: GET /metrics in the Prometheus text format.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	s.reg.writeMetrics(&b)
	fmt.Fprintf(&b, "# HELP %s Requests being handled.\n# TYPE %s gauge\n%s %d\n", metricHTTPInFlight, metricHTTPInFlight, metricHTTPInFlight, len(s.sem))
	for _, c := range []struct {
		name, help string
		v          uint64
	}{
		{metricUnknownModels, "Requests for a model or version that is not loaded.", s.unknownModel.Load()},
		{metricUnauthorized, "Requests refused for a missing or wrong API key.", s.unauthorized.Load()},
		{metricOverloaded, "Requests refused by the concurrency limit.", s.overloaded.Load()},
	} {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", c.name, c.help, c.name, c.name, c.v)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write(b.Bytes()) //nolint:errcheck // the client is gone
}
