package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/internal/onnx"
)

// modelRoutes are the model registry's routes under one workspace (one is
// the workspace path pattern).
func (a *API) modelRoutes(one string) []Route {
	const (
		model   = "/models/{name}"
		version = model + "/versions/{version}"
	)
	return []Route{
		{Method: "POST", Pattern: one + model + "/versions", Summary: "Register a model version: the raw ONNX file as the body, or empty with run= and path= to register a run's artifact",
			Request: "binary", Response: "ModelVersion", Status: 201, Query: []string{"description", "tag", "run", "path"}, handler: a.registerModel},
		{Method: "GET", Pattern: one + "/models", Summary: "List models (latest version, version count, aliases)", Response: "[]Model", Status: 200, handler: a.listModels},
		{Method: "GET", Pattern: one + model + "/versions", Summary: "List the versions of a model, newest first", Response: "[]ModelVersion", Status: 200, handler: a.listModelVersions},
		{Method: "GET", Pattern: one + version, Summary: "Show a model version ({version}: a number, latest, an alias or @alias)", Response: "ModelVersion", Status: 200, handler: a.getModelVersion},
		{Method: "GET", Pattern: one + version + "/content", Summary: "Download the ONNX file of a model version", Response: "binary", Status: 200, handler: a.getModelContent},
		{Method: "POST", Pattern: one + version + "/tags", Summary: "Set tags of a model version", Request: "Tags", Response: "ModelVersion", Status: 200, handler: a.setModelTags},
		{Method: "DELETE", Pattern: one + version, Summary: "Delete a model version (409 while deployed, or while an alias points at it unless force=true)",
			Status: 204, Query: []string{"force"}, handler: a.deleteModelVersion},
		{Method: "PUT", Pattern: one + model + "/aliases/{alias}", Summary: "Point an alias at a version (moving it)", Request: "AliasSet", Response: "ModelVersion", Status: 200, handler: a.setModelAlias},
		{Method: "DELETE", Pattern: one + model + "/aliases/{alias}", Summary: "Delete an alias", Status: 204, handler: a.deleteModelAlias},
	}
}

// modelSchemas adds the registry's JSON types to the OpenAPI schemas.
func modelSchemas(s obj) obj {
	timeT := obj{"type": "string", "format": "date-time"}
	strMap := mapOf(obj{"type": "string"})
	dim := obj{"description": "a fixed size (integer), a named dynamic dimension (string), or -1 for an unnamed dynamic one",
		"oneOf": []obj{{"type": "integer", "format": "int64"}, {"type": "string"}}}
	s["TensorSpec"] = props(obj{"name": str(""), "datatype": str("Open Inference Protocol v2 name: FP32, FP64, FP16, BF16, INT8..INT64, UINT8..UINT64, BOOL, BYTES; NON_TENSOR for sequences and maps"),
		"shape": obj{"type": "array", "nullable": true, "items": dim, "description": "null when the model declares no shape"}})
	s["ModelVersion"] = props(obj{"workspace": str(""), "name": str(""), "version": obj{"type": "integer"},
		"sha256": str(""), "size": obj{"type": "integer", "format": "int64"}, "description": str(""),
		"ir_version": obj{"type": "integer", "format": "int64"}, "opset": obj{"type": "integer", "format": "int64"}, "producer": str(""),
		"inputs": arrayOf(ref("TensorSpec")), "outputs": arrayOf(ref("TensorSpec")), "tags": strMap, "aliases": arrayOf(obj{"type": "string"}),
		"run_id": str("the run it was registered from"), "experiment": str(""), "artifact_path": str(""), "created_at": timeT})
	s["Model"] = props(obj{"workspace": str(""), "name": str(""), "versions": obj{"type": "integer"}, "latest": ref("ModelVersion"),
		"aliases": mapOf(obj{"type": "integer"}), "created_at": timeT})
	s["AliasSet"] = props(obj{"version": obj{"type": "integer"}}, "version")
	return s
}

// registerModel registers a new version. Either the body is the ONNX file,
// or the body is empty and run= and path= name a run artifact, whose blob
// the version then shares. The file is read into memory (decoding needs it
// whole; at most MaxArtifactBytes) and decoded with package onnx before
// anything is stored: a file that is not a valid ONNX model, or that keeps
// tensor data in external files, is refused with 400 and leaves the blob
// store and the registry untouched.
func (a *API) registerModel(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ws, name := r.PathValue("ws"), r.PathValue("name")
	q := r.URL.Query()
	mc := hub.ModelVersionCreate{Name: name, Description: q.Get("description"), RunID: q.Get("run"), ArtifactPath: q.Get("path")}
	if err := a.checkRegister(&mc, q["tag"]); err != nil {
		a.fail(w, r, err)
		return
	}
	if _, err := a.store.GetWorkspace(ctx, ws); err != nil {
		a.fail(w, r, err)
		return
	}
	var data []byte
	if mc.RunID != "" {
		if n, _ := r.Body.Read(make([]byte, 1)); n > 0 {
			a.fail(w, r, fmt.Errorf("register model %q from run %q: expected an empty body (the file is the run's artifact %q): %w", name, mc.RunID, mc.ArtifactPath, hub.ErrInvalid))
			return
		}
		art, err := a.store.GetArtifact(ctx, ws, mc.RunID, mc.ArtifactPath)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if data, err = a.readBlob(r, art); err != nil {
			a.fail(w, r, err)
			return
		}
		mc.Blob = hub.Blob{SHA256: art.SHA256, Size: art.Size}
	} else {
		var err error
		if data, err = readBody(w, r, a.cfg.MaxArtifactBytes); err != nil {
			a.fail(w, r, fmt.Errorf("register model %q: %w", name, err))
			return
		}
		if len(data) == 0 {
			a.fail(w, r, fmt.Errorf("register model %q: empty body: expected the ONNX file, or run= and path= naming a run artifact: %w", name, hub.ErrInvalid))
			return
		}
	}
	if err := readSignature(&mc, data); err != nil {
		a.fail(w, r, err)
		return
	}
	if mc.RunID == "" {
		b, err := a.blobs.Put(ctx, bytesReader(data), a.cfg.MaxArtifactBytes)
		if err != nil {
			a.fail(w, r, fmt.Errorf("register model %q: %w", name, err))
			return
		}
		mc.Blob = b
	}
	mv, err := a.store.CreateModelVersion(ctx, ws, mc)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, mv)
}

// checkRegister validates what a registration carries in its query, before
// any byte of the body is read.
func (a *API) checkRegister(mc *hub.ModelVersionCreate, tags []string) error {
	if err := hub.CheckName("model", mc.Name); err != nil {
		return err
	}
	if (mc.RunID == "") != (mc.ArtifactPath == "") {
		return fmt.Errorf("register model %q: run= and path= go together (the run and the path of its artifact): %w", mc.Name, hub.ErrInvalid)
	}
	if mc.ArtifactPath != "" {
		if err := checkArtifactPath(mc.ArtifactPath); err != nil {
			return err
		}
	}
	if err := hub.CheckValue("model", "description", mc.Description); err != nil {
		return err
	}
	for _, kv := range tags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("query parameter tag=%q: expected KEY=VALUE: %w", kv, hub.ErrInvalid)
		}
		if err := hub.CheckKey("tag", k); err != nil {
			return err
		}
		if err := hub.CheckValue("tag", k, v); err != nil {
			return err
		}
		if mc.Tags == nil {
			mc.Tags = map[string]string{}
		}
		mc.Tags[k] = v
	}
	return nil
}

// readBlob reads a run artifact's content whole, for decoding.
func (a *API) readBlob(r *http.Request, art hub.Artifact) ([]byte, error) {
	if art.Size > a.cfg.MaxArtifactBytes {
		return nil, fmt.Errorf("artifact %q of %d bytes exceeds the model limit of %d bytes: %w", art.Path, art.Size, a.cfg.MaxArtifactBytes, hub.ErrTooLarge)
	}
	f, _, err := a.blobs.Open(r.Context(), art.SHA256)
	if err != nil {
		return nil, fmt.Errorf("artifact %q: %w", art.Path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("artifact %q: %w", art.Path, err)
	}
	return data, nil
}

// readSignature decodes data as an ONNX model and fills in what the
// registry keeps of it. Errors wrap hub.ErrInvalid and carry the decoder's
// location (message, field, byte offset).
func readSignature(mc *hub.ModelVersionCreate, data []byte) error {
	what := "model file"
	if mc.RunID != "" {
		what = fmt.Sprintf("artifact %q of run %q", mc.ArtifactPath, mc.RunID)
	}
	m, err := onnx.Decode(data)
	switch {
	case errors.Is(err, onnx.ErrExternalData):
		return fmt.Errorf("register model %q: %s: ONNX models with external data are refused (embed the tensors in the file): %v: %w", mc.Name, what, err, hub.ErrInvalid)
	case err != nil:
		return fmt.Errorf("register model %q: %s is not a valid ONNX model: %v: %w", mc.Name, what, err, hub.ErrInvalid)
	}
	mc.IRVersion, mc.Opset = m.IRVersion, m.Opset()
	mc.Producer = strings.TrimSpace(m.ProducerName + " " + m.ProducerVersion)
	sig := m.Signature()
	mc.Inputs, mc.Outputs = tensorSpecs(sig.Inputs), tensorSpecs(sig.Outputs)
	return nil
}

func tensorSpecs(vs []onnx.ValueInfo) []hub.TensorSpec {
	out := make([]hub.TensorSpec, 0, len(vs))
	for _, v := range vs {
		ts := hub.TensorSpec{Name: v.Name, Datatype: datatype(v)}
		if v.IsTensor() && v.HasShape {
			ts.Shape = make([]hub.Dim, len(v.Shape))
			for i, d := range v.Shape {
				ts.Shape[i] = hub.Dim{Value: d.Value, Param: d.Param}
				if d.Dynamic() {
					ts.Shape[i].Value = -1
				}
			}
		}
		out = append(out, ts)
	}
	return out
}

// datatype names a value's element type as the Open Inference Protocol v2
// does.
func datatype(v onnx.ValueInfo) string {
	if !v.IsTensor() {
		return "NON_TENSOR"
	}
	switch v.ElemType {
	case onnx.Float:
		return "FP32"
	case onnx.Double:
		return "FP64"
	case onnx.Float16:
		return "FP16"
	case onnx.BFloat16:
		return "BF16"
	case onnx.String:
		return "BYTES"
	}
	return v.ElemType.String() // INT8..UINT64, BOOL, COMPLEX64, COMPLEX128
}

func (a *API) listModels(w http.ResponseWriter, r *http.Request) {
	list, err := a.store.ListModels(r.Context(), r.PathValue("ws"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if list == nil {
		list = []hub.Model{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *API) listModelVersions(w http.ResponseWriter, r *http.Request) {
	list, err := a.store.ListModelVersions(r.Context(), r.PathValue("ws"), r.PathValue("name"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// version resolves the {version} path value of r.
func (a *API) version(r *http.Request) (hub.ModelVersion, error) {
	ref, err := hub.ParseVersionRef(r.PathValue("version"))
	if err != nil {
		return hub.ModelVersion{}, err
	}
	return a.store.GetModelVersion(r.Context(), r.PathValue("ws"), r.PathValue("name"), ref)
}

func (a *API) getModelVersion(w http.ResponseWriter, r *http.Request) {
	mv, err := a.version(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mv)
}

func (a *API) getModelContent(w http.ResponseWriter, r *http.Request) {
	mv, err := a.version(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Model-Version", strconv.Itoa(mv.Version))
	a.serveBlob(w, r, mv.SHA256)
}

func (a *API) setModelTags(w http.ResponseWriter, r *http.Request) {
	var body tagsBody
	if err := decodeJSON(w, r, a.cfg.MaxBodyBytes, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	ref, err := hub.ParseVersionRef(r.PathValue("version"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	mv, err := a.store.SetModelVersionTags(r.Context(), r.PathValue("ws"), r.PathValue("name"), ref, body.Tags)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mv)
}

func (a *API) deleteModelVersion(w http.ResponseWriter, r *http.Request) {
	v := r.PathValue("version")
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		a.fail(w, r, fmt.Errorf("delete version %q: expected a version number (aliases and latest are not accepted for deletes): %w", v, hub.ErrInvalid))
		return
	}
	force, err := boolParam(r, "force")
	if err == nil {
		err = a.store.DeleteModelVersion(r.Context(), r.PathValue("ws"), r.PathValue("name"), n, force)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type aliasSet struct {
	Version int `json:"version"`
}

func (a *API) setModelAlias(w http.ResponseWriter, r *http.Request) {
	var body aliasSet
	if err := decodeJSON(w, r, a.cfg.MaxBodyBytes, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	if body.Version < 1 {
		a.fail(w, r, fmt.Errorf("alias %q: version %d: expected a version number of 1 or more: %w", r.PathValue("alias"), body.Version, hub.ErrInvalid))
		return
	}
	mv, err := a.store.SetModelAlias(r.Context(), r.PathValue("ws"), r.PathValue("name"), r.PathValue("alias"), body.Version)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mv)
}

func (a *API) deleteModelAlias(w http.ResponseWriter, r *http.Request) {
	if err := a.store.DeleteModelAlias(r.Context(), r.PathValue("ws"), r.PathValue("name"), r.PathValue("alias")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
