package sample

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// InferBody is the v2 infer request body for the rows in pixels (64 values
// each) as the sample model's "pixels" input, asking for the named outputs
// (all of them when none is named).
func InferBody(pixels []float32, outputs ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"inputs":[{"name":"pixels","datatype":"FP32","shape":[%d,64],"data":[`, len(pixels)/64)
	for i, v := range pixels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatFloat(float64(v), 'g', -1, 32))
	}
	b.WriteString(`]}]`)
	if len(outputs) > 0 {
		b.WriteString(`,"outputs":[`)
		for i, o := range outputs {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"name":%q}`, o)
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
	return b.Bytes()
}

// Scorer scores rows with the sample model through one Open Inference
// Protocol v2 infer URL, such as an agent's
// http://HOST:PORT/v2/models/DEPLOYMENT/infer. It is safe for concurrent
// use if HTTP is.
type Scorer struct {
	URL string
	// Key, if set, is sent as Authorization: Bearer KEY.
	Key string
	// HTTP is the client; nil means http.DefaultClient.
	HTTP *http.Client
}

// Infer sends the rows in pixels (64 values each) as the "pixels" input in
// one request and returns the model's "label" output. A non-200 answer is
// an error naming the URL, the status and the answer's body.
func (s *Scorer) Infer(ctx context.Context, pixels []float32) ([]int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(InferBody(pixels, "label")))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.Key != "" {
		req.Header.Set("Authorization", "Bearer "+s.Key)
	}
	hc := s.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s: %s: %s", s.URL, resp.Status, bytes.TrimSpace(body))
	}
	var r struct {
		Outputs []struct {
			Name string  `json:"name"`
			Data []int64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("POST %s: answer is not a v2 infer response: %w", s.URL, err)
	}
	for _, o := range r.Outputs {
		if o.Name == "label" {
			return o.Data, nil
		}
	}
	return nil, fmt.Errorf("POST %s: the answer has no \"label\" output", s.URL)
}
