package scoring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

// Benchmarks of the hot path, for the tiny MLP (16-16-4) and a larger one
// (256-1024-256-64):
//
//	go test -run XXX -bench . ./scoring/

var benchModels = []struct {
	name   string
	in     int
	hidden []int
	out    int
}{
	{"tiny", 16, []int{16}, 4},
	{"large", 256, []int{1024, 256}, 64},
}

func benchInput(in int) []float32 {
	x := make([]float32, in)
	for i := range x {
		x[i] = float32(i%13)/7 - 0.9
	}
	return x
}

func BenchmarkDecodeInferRequest(b *testing.B) {
	for _, n := range []int{16, 1024} {
		body := []byte(inferBody(benchInput(n), 1))
		b.Run(fmt.Sprintf("floats=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := scoring.DecodeInferRequest(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkValidate(b *testing.B) {
	sig := scoring.Signature{Inputs: []scoring.TensorSpec{{Name: "input", DataType: scoring.Float32, Shape: []int64{-1, 16}}}}
	in := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{1, 16}, Data: benchInput(16)}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sig.Validate(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendInferResponse(b *testing.B) {
	outs := []scoring.Tensor{{Name: "output", DataType: scoring.Float32, Shape: []int64{1, 256}, Data: benchInput(256)}}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = scoring.AppendInferResponse(buf[:0], "m", "1", "", outs)
	}
}

// BenchmarkInfer compares, per model, a raw ONNX Runtime run, an
// in-process Version.Infer (validation, queue, batcher) and a full HTTP
// round trip on loopback.
func BenchmarkInfer(b *testing.B) {
	for _, m := range benchModels {
		path := mlpPath(b, m.in, m.hidden, m.out, 1)
		x := benchInput(m.in)
		in := []scoring.Tensor{{Name: "input", DataType: scoring.Float32, Shape: []int64{1, int64(m.in)}, Data: x}}
		b.Run(m.name+"/raw", func(b *testing.B) {
			r, err := ort.Open(path, ort.Config{}, discard())
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			for b.Loop() {
				if _, err := r.Run(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
		})
		reg, err := scoring.NewRegistry(scoring.RegistryConfig{}, discard())
		if err != nil {
			b.Fatal(err)
		}
		r, err := ort.Open(path, ort.Config{}, discard())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := reg.Load(context.Background(), "m", "1", r); err != nil {
			b.Fatal(err)
		}
		b.Run(m.name+"/registry", func(b *testing.B) {
			for b.Loop() {
				v, err := reg.Acquire("m", "")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := v.Infer(context.Background(), in); err != nil {
					b.Fatal(err)
				}
				v.Release()
			}
		})
		b.Run(m.name+"/http", func(b *testing.B) {
			srv, err := scoring.NewServer(scoring.ServerConfig{}, reg, discard())
			if err != nil {
				b.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, ln) }()
			defer func() { cancel(); <-done }()
			body, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{"name": "input", "datatype": "FP32", "shape": []int{1, m.in}, "data": x}}})
			url := "http://" + ln.Addr().String() + "/v2/models/m/infer"
			client := &http.Client{Transport: &http.Transport{}}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Post(url, "application/json", strings.NewReader(string(body)))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
		})
		reg.Close(context.Background())
	}
}

// nullWriter is a minimal http.ResponseWriter for handler benchmarks.
type nullWriter struct {
	h    http.Header
	code int
}

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nullWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkHandler measures the server's own work for one tiny-model infer
// (routing, body, decode, validation, queue, ONNX Runtime, encode) without
// sockets.
func BenchmarkHandler(b *testing.B) {
	m := benchModels[0]
	reg, err := scoring.NewRegistry(scoring.RegistryConfig{}, discard())
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close(context.Background())
	r, err := ort.Open(mlpPath(b, m.in, m.hidden, m.out, 1), ort.Config{}, discard())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := reg.Load(context.Background(), "m", "1", r); err != nil {
		b.Fatal(err)
	}
	srv, err := scoring.NewServer(scoring.ServerConfig{}, reg, discard())
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	body := inferBody(benchInput(m.in), 1)
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest("POST", "/v2/models/m/infer", strings.NewReader(body))
		w := &nullWriter{h: http.Header{}}
		h.ServeHTTP(w, req)
		if w.code != 200 {
			b.Fatal(w.code)
		}
	}
}
