package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/atelier-ml/atelier/hub"
	"github.com/spf13/cobra"
)

func (a *app) deployDriftCmd() *cobra.Command {
	var since string
	cmd := &cobra.Command{
		Use:   "drift NAME",
		Short: "Show a deployment's input drift against its baseline",
		Long: `Show, per input feature (INPUT[INDEX], an element of an input tensor), the
population stability index (PSI, on the baseline's deciles) and the KS distance
between the deployment's inputs since --since and its baseline, with the
counts and means of both sides. A feature is judged once both sides have at
least the minimum count (500 values); it drifts at PSI 0.2 or more, and the
deployment drifts when any feature does. The table lists the largest PSI
first.

The baseline is the training run's inputs when the deployed version was
registered from a run that saved baseline.csv (see docs/drift.md), otherwise
the first hour of telemetry after the version started reporting (status
pending_baseline until that hour is over). The hub checks every deployment
every minute over the last hour and marks it drifting ("deploy show", "deploy
list"), recording drift_detected and drift_resolved events.`,
		Args: argsRange(1, 1, "NAME"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			rep, err := a.client().DeploymentDrift(cmd.Context(), ws, args[0], since)
			if err != nil {
				return err
			}
			return a.emit(rep, func(out io.Writer) { driftTable(out, rep) })
		}),
	}
	cmd.Flags().StringVar(&since, "since", "1h", "window start: a duration before now (90m) or an RFC 3339 time")
	return cmd
}

func driftTable(out io.Writer, rep *hub.DriftReport) {
	fmt.Fprintf(out, "Deployment:\t%s (%s:%d)\n", rep.Deployment, rep.Model, rep.Version)
	switch {
	case rep.BaselineSource == "":
		fmt.Fprintf(out, "Baseline:\tpending (first hour of telemetry)\n")
	case !rep.BaselineSince.IsZero():
		fmt.Fprintf(out, "Baseline:\t%s %s to %s\n", rep.BaselineSource, fmtTime(&rep.BaselineSince), fmtTime(&rep.BaselineUntil))
	default:
		fmt.Fprintf(out, "Baseline:\t%s\n", rep.BaselineSource)
	}
	fmt.Fprintf(out, "Window:\t%s to %s\n", fmtTime(&rep.Since), fmtTime(&rep.Until))
	fmt.Fprintf(out, "Status:\t%s (PSI threshold %g, at least %d values per side)\n", rep.Status, rep.Threshold, rep.MinCount)
	fs := append([]hub.FeatureDrift(nil), rep.Features...)
	psi := func(f hub.FeatureDrift) float64 {
		if f.PSI == nil {
			return -1
		}
		return *f.PSI
	}
	sort.SliceStable(fs, func(i, j int) bool { return psi(fs[i]) > psi(fs[j]) })
	fmt.Fprintln(out, "\nFEATURE\tPSI\tKS\tBASELINE N\tN\tBASELINE MEAN\tMEAN\tDRIFTING")
	for _, f := range fs {
		p, k := "-", "-"
		if f.PSI != nil {
			p, k = strconv.FormatFloat(*f.PSI, 'f', 4, 64), strconv.FormatFloat(*f.KS, 'f', 4, 64)
		}
		drifting := "no"
		switch {
		case f.Drifting:
			drifting = "yes"
		case !f.Judged:
			drifting = "-"
		}
		bm := "-"
		if f.BaselineCount > 0 {
			bm = strconv.FormatFloat(f.BaselineMean, 'g', 4, 64)
		}
		fmt.Fprintf(out, "%s[%d]\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", f.Input, f.Index, p, k, f.BaselineCount, f.Count,
			bm, strconv.FormatFloat(f.Mean, 'g', 4, 64), drifting)
	}
}

func (a *app) deployCaptureCmd() *cobra.Command {
	var output, format string
	cmd := &cobra.Command{
		Use:   "capture NAME --output FILE",
		Short: "Export a deployment's captured inputs as a dataset (NDJSON or CSV)",
		Long: `Export the inputs agents captured for a deployment (its capture fraction,
MonitorOptions.capture_fraction) to FILE, oldest first: the hub keeps the
newest 10,000 per deployment.

--format ndjson (the default unless FILE ends in .csv) writes one KServe v2
JSON request body per line, as the agent received it. --format csv writes one
row per sample (per row of a batched request) with a header naming every
column INPUT[INDEX], the element index within the sample, row-major: the
format of a training run's baseline.csv, so the file is a dataset a training
run can read and save as its baseline (docs/drift.md). Every captured request
must then have the same inputs and sample shape. FILE "-" is standard output.`,
		Args: argsRange(1, 1, "NAME"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			if output == "" {
				return usageError("--output FILE is required")
			}
			if format == "" {
				format = "ndjson"
				if strings.HasSuffix(strings.ToLower(output), ".csv") {
					format = "csv"
				}
			}
			if format != "ndjson" && format != "csv" {
				return usageError("--format %q: must be ndjson or csv", format)
			}
			var w io.Writer = a.stdout
			var f *os.File
			if output != "-" {
				var err error
				if f, err = os.CreateTemp(filepath.Dir(output), ".capture-*"); err != nil {
					return err
				}
				defer os.Remove(f.Name())
				defer f.Close()
				w = f
			}
			bw := bufio.NewWriter(w)
			cw := &captureWriter{w: bw, csv: format == "csv"}
			var after int64
			for {
				page, err := a.client().CapturedInputs(cmd.Context(), ws, args[0], after, 0)
				if err != nil {
					return err
				}
				if len(page) == 0 {
					break
				}
				for _, c := range page {
					if err := cw.write(c); err != nil {
						return fmt.Errorf("captured input %d: %w", c.ID, err)
					}
				}
				after = page[len(page)-1].ID
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			if f != nil {
				if err := f.Sync(); err != nil {
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
				if err := os.Rename(f.Name(), output); err != nil {
					return err
				}
			}
			fmt.Fprintf(a.stderr, "wrote %d captured requests (%d samples) to %s\n", cw.requests, cw.samples, output)
			return nil
		}),
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "file to write (- for standard output)")
	cmd.Flags().StringVar(&format, "format", "", "ndjson or csv (default: csv if FILE ends in .csv, else ndjson)")
	return cmd
}

// captureWriter writes captured v2 bodies as NDJSON or as CSV rows.
type captureWriter struct {
	w                 *bufio.Writer
	csv               bool
	header            []string // CSV: INPUT[INDEX] columns, fixed by the first body
	requests, samples int
}

// v2Request is the part of a KServe v2 inference request body read here.
type v2Request struct {
	Inputs []struct {
		Name  string          `json:"name"`
		Shape []int64         `json:"shape"`
		Data  json.RawMessage `json:"data"`
	} `json:"inputs"`
}

func (cw *captureWriter) write(c hub.CapturedInput) error {
	cw.requests++
	if !cw.csv {
		cw.samples++
		var compact bytes.Buffer
		if err := json.Compact(&compact, c.Body); err != nil {
			return err
		}
		cw.w.Write(compact.Bytes())
		return cw.w.WriteByte('\n')
	}
	var req v2Request
	if err := json.Unmarshal(c.Body, &req); err != nil {
		return fmt.Errorf("not a v2 request body: %w", err)
	}
	if len(req.Inputs) == 0 {
		return errors.New("no inputs")
	}
	var header []string
	var cols [][]float64 // per input: its data, flattened
	var per []int        // per input: elements per sample
	rows := -1
	for _, in := range req.Inputs {
		var data []float64
		if err := flatten(in.Data, &data); err != nil {
			return fmt.Errorf("input %q data: %w", in.Name, err)
		}
		n := int64(1)
		if len(in.Shape) == 0 {
			return fmt.Errorf("input %q: no shape", in.Name)
		}
		for _, d := range in.Shape[1:] {
			n *= d
		}
		if in.Shape[0] < 0 || n <= 0 || in.Shape[0]*n != int64(len(data)) {
			return fmt.Errorf("input %q: shape %v does not match %d values", in.Name, in.Shape, len(data))
		}
		if rows >= 0 && int64(rows) != in.Shape[0] {
			return fmt.Errorf("input %q: %d samples, other inputs %d", in.Name, in.Shape[0], rows)
		}
		rows = int(in.Shape[0])
		for i := range n {
			header = append(header, in.Name+"["+strconv.FormatInt(i, 10)+"]")
		}
		cols = append(cols, data)
		per = append(per, int(n))
	}
	if cw.header == nil {
		cw.header = header
		cw.w.WriteString(strings.Join(header, ",") + "\n")
	} else if strings.Join(cw.header, ",") != strings.Join(header, ",") {
		return fmt.Errorf("inputs %d columns (%s...), earlier requests %d: CSV needs one sample shape; use --format ndjson", len(header), header[0], len(cw.header))
	}
	for r := range rows {
		first := true
		for i, data := range cols {
			for _, v := range data[r*per[i] : (r+1)*per[i]] {
				if !first {
					cw.w.WriteByte(',')
				}
				first = false
				cw.w.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
			}
		}
		cw.w.WriteByte('\n')
		cw.samples++
	}
	return nil
}

// flatten appends the numbers of a v2 data array (flat or nested, numbers
// or booleans) in row-major order.
func flatten(raw json.RawMessage, out *[]float64) error {
	var arr []json.RawMessage
	if err := json.Unmarshal(raw, &arr); err != nil {
		return errors.New("expected an array of numbers")
	}
	for _, e := range arr {
		t := strings.TrimSpace(string(e))
		switch {
		case strings.HasPrefix(t, "["):
			if err := flatten(e, out); err != nil {
				return err
			}
		case t == "true":
			*out = append(*out, 1)
		case t == "false":
			*out = append(*out, 0)
		default:
			v, err := strconv.ParseFloat(t, 64)
			if err != nil {
				return fmt.Errorf("%s: expected a number", t)
			}
			*out = append(*out, v)
		}
	}
	return nil
}
