package api_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/api"
	"github.com/atelier-ml/atelier/internal/onnx/onnxtest"
)

// externalDataModel returns an MLP whose graph also has an initializer that
// keeps its data in an external file.
func externalDataModel(t testing.TB) []byte {
	t.Helper()
	m := onnxtest.MLPModel(4, nil, 2, 1)
	var entry, tensor []byte
	entry = protowire.AppendTag(entry, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, "location")
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendString(entry, "weights.bin")
	tensor = protowire.AppendTag(tensor, 1, protowire.VarintType)
	tensor = protowire.AppendVarint(tensor, 4)
	tensor = protowire.AppendTag(tensor, 2, protowire.VarintType)
	tensor = protowire.AppendVarint(tensor, 1)
	tensor = protowire.AppendTag(tensor, 8, protowire.BytesType)
	tensor = protowire.AppendString(tensor, "extra")
	tensor = protowire.AppendTag(tensor, 13, protowire.BytesType)
	tensor = protowire.AppendBytes(tensor, entry)
	tensor = protowire.AppendTag(tensor, 14, protowire.VarintType)
	tensor = protowire.AppendVarint(tensor, 1)
	m.Graph.Unknown = protowire.AppendTag(m.Graph.Unknown, 5, protowire.BytesType)
	m.Graph.Unknown = protowire.AppendBytes(m.Graph.Unknown, tensor)
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestModelRegistry(t *testing.T) {
	e := newEnv(t, api.Config{MaxArtifactBytes: 64 << 10})
	e.ok(201, "POST", ws, map[string]string{"name": "w"}, nil)
	models := ws + "/w/models"
	file := onnxtest.MLP(4, []int{8}, 3, 1)
	sum := sha256.Sum256(file)

	// Register from a file, with tags and a description in the query.
	var v1 hub.ModelVersion
	e.ok(201, "POST", models+"/clf/versions?description=first&tag=team%3Dml&tag=stage%3Ddev", file, &v1)
	if v1.Version != 1 || v1.SHA256 != hex.EncodeToString(sum[:]) || v1.Size != int64(len(file)) ||
		v1.IRVersion != 8 || v1.Opset != 13 || v1.Producer != "atelier-onnxtest" || v1.Description != "first" ||
		v1.Tags["team"] != "ml" || v1.Tags["stage"] != "dev" {
		t.Fatalf("v1 = %+v", v1)
	}
	if len(v1.Inputs) != 1 || v1.Inputs[0].Name != "input" || v1.Inputs[0].Datatype != "FP32" ||
		hub.ShapeString(v1.Inputs[0].Shape) != "[batch,4]" || hub.ShapeString(v1.Outputs[0].Shape) != "[batch,3]" {
		t.Errorf("signature: %+v -> %+v", v1.Inputs, v1.Outputs)
	}
	if len(v1.Inputs) == 1 && len(v1.Inputs[0].Shape) == 2 && v1.Inputs[0].Shape[0].Param != "batch" {
		t.Errorf("dynamic dim: %+v", v1.Inputs[0].Shape[0])
	}

	// Register from a run artifact: same digest, lineage kept.
	r := e.run("w", "train")
	e.ok(200, "PUT", ws+"/w/runs/"+r.ID+"/artifacts/out/model.onnx", file, nil)
	var v2 hub.ModelVersion
	e.ok(201, "POST", models+"/clf/versions?run="+r.ID+"&path=out/model.onnx", nil, &v2)
	if v2.Version != 2 || v2.SHA256 != v1.SHA256 || v2.RunID != r.ID || v2.Experiment != "train" || v2.ArtifactPath != "out/model.onnx" {
		t.Fatalf("v2 = %+v", v2)
	}

	// Refusals leave the registry untouched.
	e.fails(400, "invalid", "POST", models+"/clf/versions", "not an onnx file at all", "is not a valid ONNX model", "offset")
	e.fails(400, "invalid", "POST", models+"/clf/versions", file[:len(file)/2], "is not a valid ONNX model", "decode ")
	e.fails(400, "invalid", "POST", models+"/clf/versions", externalDataModel(t), "external data")
	e.fails(400, "invalid", "POST", models+"/clf/versions", nil, "empty body")
	e.fails(413, "too_large", "POST", models+"/clf/versions", make([]byte, 65<<10), "limit")
	e.fails(400, "invalid", "POST", models+"/bad%20name/versions", file, `model name "bad name"`)
	e.fails(400, "invalid", "POST", models+"/clf/versions?tag=nokv", file, `tag="nokv"`)
	e.fails(400, "invalid", "POST", models+"/clf/versions?run="+r.ID, nil, "go together")
	e.fails(400, "invalid", "POST", models+"/clf/versions?run="+r.ID+"&path=out/model.onnx", file, "expected an empty body")
	e.fails(404, "not_found", "POST", models+"/clf/versions?run="+r.ID+"&path=nope.onnx", nil, `artifact "nope.onnx"`)
	e.ok(200, "PUT", ws+"/w/runs/"+r.ID+"/artifacts/notes.txt", "hello", nil)
	e.fails(400, "invalid", "POST", models+"/clf/versions?run="+r.ID+"&path=notes.txt", nil, `artifact "notes.txt" of run`, "not a valid ONNX model")
	e.fails(404, "not_found", "POST", ws+"/nope/models/clf/versions", file, `workspace "nope"`)
	var vs []hub.ModelVersion
	e.ok(200, "GET", models+"/clf/versions", nil, &vs)
	if len(vs) != 2 {
		t.Fatalf("after refusals: %d versions", len(vs))
	}

	// Aliases resolve wherever a version is accepted.
	e.ok(200, "PUT", models+"/clf/aliases/production", map[string]int{"version": 1}, nil)
	var got hub.ModelVersion
	for _, v := range []string{"production", "@production", "1"} {
		e.ok(200, "GET", models+"/clf/versions/"+v, nil, &got)
		if got.Version != 1 || len(got.Aliases) != 1 {
			t.Errorf("version %s: %+v", v, got)
		}
	}
	e.ok(200, "GET", models+"/clf/versions/latest", nil, &got)
	if got.Version != 2 {
		t.Errorf("latest = %d", got.Version)
	}
	code, body := e.do("GET", models+"/clf/versions/production/content", nil)
	if code != 200 || string(body) != string(file) {
		t.Errorf("content: %d, %d bytes", code, len(body))
	}
	e.fails(404, "not_found", "GET", models+"/clf/versions/staging", nil, `alias "staging" of model "clf"`)
	e.fails(404, "not_found", "GET", models+"/clf/versions/9", nil, `version 9 of model "clf"`)
	e.fails(404, "not_found", "GET", models+"/nope/versions/1", nil, `model "nope"`)
	e.fails(400, "invalid", "GET", models+"/clf/versions/0", nil, `version "0"`)
	e.fails(400, "invalid", "PUT", models+"/clf/aliases/latest", map[string]int{"version": 1}, `alias "latest"`)
	e.fails(400, "invalid", "PUT", models+"/clf/aliases/9x", map[string]int{"version": 1}, "starting with a letter")
	e.fails(404, "not_found", "PUT", models+"/clf/aliases/x", map[string]int{"version": 5}, "version 5")

	// Tags.
	e.ok(200, "POST", models+"/clf/versions/2/tags", map[string]any{"tags": map[string]string{"acc": "0.9"}}, &got)
	if got.Tags["acc"] != "0.9" {
		t.Errorf("tags: %v", got.Tags)
	}

	// List.
	var list []hub.Model
	e.ok(200, "GET", models, nil, &list)
	if len(list) != 1 || list[0].Versions != 2 || list[0].Latest.Version != 2 || list[0].Aliases["production"] != 1 {
		t.Errorf("list: %+v", list)
	}

	// Delete rules.
	e.fails(409, "conflict", "DELETE", models+"/clf/versions/1", nil, "production", "force")
	e.fails(400, "invalid", "DELETE", models+"/clf/versions/production", nil, "version number")
	e.ok(204, "DELETE", models+"/clf/versions/1?force=true", nil, nil)
	e.fails(404, "not_found", "GET", models+"/clf/versions/production", nil, `alias "production"`)
	e.ok(204, "DELETE", models+"/clf/versions/2", nil, nil)
	e.ok(200, "GET", models, nil, &list)
	if len(list) != 0 {
		t.Errorf("list after deleting every version: %+v", list)
	}
	// The run's artifact (which shared the blob) is still there.
	code, body = e.do("GET", ws+"/w/runs/"+r.ID+"/artifacts/out/model.onnx", nil)
	if code != 200 || len(body) != len(file) {
		t.Errorf("artifact after deleting the versions: %d", code)
	}
	// A new version after deletes gets the next number.
	e.ok(201, "POST", models+"/clf/versions", file, &got)
	if got.Version != 3 {
		t.Errorf("version after deletes = %d, want 3", got.Version)
	}
	e.fails(405, "method_not_allowed", "PATCH", models+"/clf/versions/3", nil, "allowed")
}

// FuzzRegisterModel: any body registers (201) or is refused as invalid
// (400), never a 500 (refusals storing nothing is TestModelRegistry's job).
func FuzzRegisterModel(f *testing.F) {
	file := onnxtest.MLP(2, []int{3}, 2, 5)
	f.Add(file)
	f.Add(file[:len(file)-3])
	f.Add([]byte("not onnx"))
	f.Add(externalDataModel(f))
	e := newEnv(f, api.Config{MaxArtifactBytes: 1 << 20})
	e.ok(201, "POST", ws, map[string]string{"name": "w"}, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		te := *e
		te.t = t
		code, out := te.do("POST", ws+"/w/models/fz/versions", body)
		switch code {
		case 201:
		case 400:
			if !strings.Contains(string(out), `"invalid"`) {
				t.Fatalf("400 with body %s", out)
			}
		default:
			t.Fatalf("status %d: %s", code, out)
		}
	})
}
