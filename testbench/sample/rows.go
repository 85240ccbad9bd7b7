package sample

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ReadRows parses the program's held-out CSV (outputs/heldout.csv): per
// line 64 pixels and a label 0-9; blank lines are skipped. pixels holds
// the rows one after another (64 values each). name is used in errors,
// which say the line and column. No rows is an error.
func ReadRows(r io.Reader, name string) (pixels []float32, labels []int64, err error) {
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
