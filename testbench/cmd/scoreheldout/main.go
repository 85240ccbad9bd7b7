package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "scoreheldout:", err)
		os.Exit(1)
	}
}

// result is what one scoring pass found.
type result struct {
	Rows, Correct, Requests int
	Elapsed                 time.Duration
}

func (r result) accuracy() float64 {
	if r.Rows == 0 {
		return 0
	}
	return float64(r.Correct) / float64(r.Rows)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scoreheldout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "base URL of the scoring endpoint, e.g. http://127.0.0.1:8080 (required)")
	model := fs.String("model", "digits", "model (deployment) name to score with")
	csvPath := fs.String("csv", "", "held-out rows: 64 pixels and a label per line (required)")
	batch := fs.Int("batch", 64, "rows per infer request")
	key := fs.String("key", "", "API key sent as Authorization: Bearer KEY")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	case *url == "":
		return errors.New("--url is required")
	case *csvPath == "":
		return errors.New("--csv is required")
	case *batch < 1:
		return fmt.Errorf("--batch %d: want >= 1", *batch)
	}
	f, err := os.Open(*csvPath)
	if err != nil {
		return err
	}
	defer f.Close()
	pixels, labels, err := readRows(f, *csvPath)
	if err != nil {
		return err
	}
	c := &scorer{url: strings.TrimRight(*url, "/") + "/v2/models/" + *model + "/infer", key: *key,
		client: &http.Client{Timeout: 30 * time.Second}}
	res, err := c.scoreAll(ctx, pixels, labels, *batch)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "scored %d held-out rows in %d requests in %s: the endpoint's accuracy is %.4f (%d correct)\n",
		res.Rows, res.Requests, res.Elapsed.Round(time.Millisecond), res.accuracy(), res.Correct)
	return nil
}

// readRows parses the CSV; name is used in errors.
func readRows(r io.Reader, name string) (pixels []float32, labels []int64, err error) {
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		cols := strings.Split(text, ",")
		if len(cols) != 65 {
			return nil, nil, fmt.Errorf("%s line %d: %d columns, want 65 (64 pixels and a label)", name, line, len(cols))
		}
		for i, c := range cols[:64] {
			v, err := strconv.ParseFloat(strings.TrimSpace(c), 32)
			if err != nil {
				return nil, nil, fmt.Errorf("%s line %d column %d: %q is not a number", name, line, i+1, c)
			}
			pixels = append(pixels, float32(v))
		}
		l, err := strconv.ParseInt(strings.TrimSpace(cols[64]), 10, 64)
		if err != nil || l < 0 || l > 9 {
			return nil, nil, fmt.Errorf("%s line %d column 65: label %q, want an integer 0-9", name, line, cols[64])
		}
		labels = append(labels, l)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(labels) == 0 {
		return nil, nil, fmt.Errorf("%s: no rows", name)
	}
	return pixels, labels, nil
}

// scorer posts infer requests to one model's infer URL.
type scorer struct {
	url, key string
	client   *http.Client
}

func (s *scorer) scoreAll(ctx context.Context, pixels []float32, labels []int64, batch int) (result, error) {
	var res result
	start := time.Now()
	for lo := 0; lo < len(labels); lo += batch {
		hi := min(lo+batch, len(labels))
		got, err := s.infer(ctx, pixels[64*lo:64*hi])
		if err != nil {
			return res, fmt.Errorf("rows %d-%d: %w", lo+1, hi, err)
		}
		if len(got) != hi-lo {
			return res, fmt.Errorf("rows %d-%d: %d labels in the answer, want %d", lo+1, hi, len(got), hi-lo)
		}
		for i, l := range got {
			if l == labels[lo+i] {
				res.Correct++
			}
		}
		res.Rows += hi - lo
		res.Requests++
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// infer scores rows (64 pixels each) and returns the "label" output.
func (s *scorer) infer(ctx context.Context, pixels []float32) ([]int64, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"inputs":[{"name":"pixels","datatype":"FP32","shape":[%d,64],"data":[`, len(pixels)/64)
	for i, v := range pixels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatFloat(float64(v), 'g', -1, 32))
	}
	b.WriteString(`]}],"outputs":[{"name":"label"}]}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, &b)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.key != "" {
		req.Header.Set("Authorization", "Bearer "+s.key)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s: %s: %s", s.url, resp.Status, bytes.TrimSpace(body))
	}
	var r struct {
		Outputs []struct {
			Name string  `json:"name"`
			Data []int64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("POST %s: answer is not a v2 infer response: %w", s.url, err)
	}
	for _, o := range r.Outputs {
		if o.Name == "label" {
			return o.Data, nil
		}
	}
	return nil, fmt.Errorf("POST %s: the answer has no \"label\" output", s.url)
}
