package main

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Pixels is the number of features: an 8×8 image.
const Pixels = 64

// Classes is the number of labels (digits 0–9).
const Classes = 10

// MaxPixel is the largest pixel value in the data.
const MaxPixel = 16

// Sample is one image with its label. Pixels hold the raw values 0–16.
type Sample struct {
	Pixels [Pixels]float32
	Label  int
}

// LoadDigits reads a gzip-compressed CSV file of samples (see ReadCSV).
func LoadDigits(path string) ([]Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load digits: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("load digits %s: %w", path, err)
	}
	defer zr.Close()
	s, err := ReadCSV(zr)
	if err != nil {
		return nil, fmt.Errorf("load digits %s: %w", path, err)
	}
	return s, nil
}

// ReadCSV reads rows of 64 pixel values (0–16) followed by a label (0–9),
// comma-separated, without a header. Blank lines are skipped. An error names
// the line and column.
func ReadCSV(r io.Reader) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		cols := strings.Split(text, ",")
		if len(cols) != Pixels+1 {
			return nil, fmt.Errorf("line %d: %d columns, want %d (64 pixels and a label)", line, len(cols), Pixels+1)
		}
		var s Sample
		for i, c := range cols {
			v, err := strconv.ParseFloat(strings.TrimSpace(c), 64)
			if err != nil {
				return nil, fmt.Errorf("line %d column %d: %q is not a number", line, i+1, c)
			}
			if i < Pixels {
				if v < 0 || v > MaxPixel {
					return nil, fmt.Errorf("line %d column %d: pixel %v outside 0–%d", line, i+1, v, MaxPixel)
				}
				s.Pixels[i] = float32(v)
				continue
			}
			if v != float64(int(v)) || v < 0 || v >= Classes {
				return nil, fmt.Errorf("line %d column %d: label %v is not an integer 0–%d", line, i+1, v, Classes-1)
			}
			s.Label = int(v)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no rows")
	}
	return out, nil
}

// WriteCSV writes samples in the format ReadCSV reads.
func WriteCSV(w io.Writer, samples []Sample) error {
	bw := bufio.NewWriter(w)
	for _, s := range samples {
		for _, p := range s.Pixels {
			bw.WriteString(strconv.FormatFloat(float64(p), 'g', -1, 32))
			bw.WriteByte(',')
		}
		bw.WriteString(strconv.Itoa(s.Label))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// BaselineFile is the name of the training-input artifact: the Atelier hub
// takes a deployed model's input drift baseline from the run artifact of
// this name (docs/drift.md).
const BaselineFile = "baseline.csv"

// WriteBaselineCSV writes the pixels of samples, the model's inputs, as
// CSV with a header naming each column INPUT[INDEX] (pixels[0] ...
// pixels[63]) and no label: the baseline format of Atelier's drift
// monitoring.
func WriteBaselineCSV(w io.Writer, samples []Sample) error {
	bw := bufio.NewWriter(w)
	for i := range Pixels {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString(InputName + "[" + strconv.Itoa(i) + "]")
	}
	bw.WriteByte('\n')
	for _, s := range samples {
		for i, p := range s.Pixels {
			if i > 0 {
				bw.WriteByte(',')
			}
			bw.WriteString(strconv.FormatFloat(float64(p), 'g', -1, 32))
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// Split returns the held-out rows (0-based index a multiple of 5) and the
// training rows, both in file order.
func Split(all []Sample) (train, heldout []Sample) {
	for i, s := range all {
		if i%5 == 0 {
			heldout = append(heldout, s)
		} else {
			train = append(train, s)
		}
	}
	return train, heldout
}
