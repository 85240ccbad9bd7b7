package dataset

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/atelier-ml/atelier/hub"
)

// MaxLineBytes bounds one line of a JSON Lines file (and so the memory a
// check holds).
const MaxLineBytes = 16 << 20

// errAbandoned ends a check whose reader was closed before its end.
var errAbandoned = errors.New("dataset check abandoned")

// Checker is an io.Reader that passes the bytes of an upload through while
// checking them: that they parse as the format (JSON Lines: every non-empty
// line is JSON; CSV: a header row and records of as many fields), that
// there is at least one byte, and, when a digest is expected, that the
// whole content has it. A failed check is a read error wrapping
// hub.ErrInvalid, so hub.Blobs.Put fed by a Checker stores nothing when the
// content is bad.
//
// The format check runs in a goroutine fed through a pipe: Close the
// Checker when done with it (it is safe to Close after the end). A Checker
// is for one goroutine.
type Checker struct {
	r      io.Reader
	want   string
	h      hash.Hash
	n      int64
	pw     *io.PipeWriter
	done   chan checkResult
	result *checkResult
}

type checkResult struct {
	rows int64
	err  error
}

// NewChecker returns a Checker of r as format (hub.FormatJSONL, hub.FormatCSV or hub.FormatBinary);
// wantSHA256 is the expected lowercase hex digest, or "" for none.
func NewChecker(format string, r io.Reader, wantSHA256 string) (*Checker, error) {
	if err := hub.CheckDatasetFormat(format); err != nil {
		return nil, err
	}
	var check func(io.Reader) (int64, error)
	switch format {
	case hub.FormatJSONL:
		check = checkJSONL
	case hub.FormatCSV:
		check = checkCSV
	default:
		check = func(r io.Reader) (int64, error) { _, err := io.Copy(io.Discard, r); return 0, err }
	}
	pr, pw := io.Pipe()
	c := &Checker{r: r, want: wantSHA256, h: sha256.New(), pw: pw, done: make(chan checkResult, 1)}
	go func() {
		rows, err := check(pr)
		if err != nil {
			pr.CloseWithError(err)
		} else {
			_, err = io.Copy(io.Discard, pr) // a checker may stop before the end
		}
		c.done <- checkResult{rows, err}
	}()
	return c, nil
}

// Read implements io.Reader. At the end of the content it waits for the
// format check and returns its error, or io.EOF.
func (c *Checker) Read(p []byte) (int, error) {
	if c.result != nil {
		if c.result.err != nil {
			return 0, c.result.err
		}
		return 0, io.EOF
	}
	n, err := c.r.Read(p)
	if n > 0 {
		c.n += int64(n)
		c.h.Write(p[:n])
		if _, err := c.pw.Write(p[:n]); err != nil {
			// The format check failed and closed the pipe with its error,
			// which finish returns.
			return 0, c.finish(nil)
		}
	}
	switch {
	case err == io.EOF:
		c.pw.Close()
		if ferr := c.finish(nil); ferr != nil {
			return n, ferr
		}
		return n, io.EOF
	case err != nil:
		return n, c.finish(err)
	}
	return n, nil
}

// finish waits for the format check and returns the first error: cause (a
// read error, which it hands to the check), the check's, an empty content,
// or a digest mismatch.
func (c *Checker) finish(cause error) error {
	if c.result != nil {
		return c.result.err
	}
	if cause != nil {
		c.pw.CloseWithError(cause)
	}
	res := <-c.done
	switch {
	case cause != nil:
		res.err = cause
	case res.err != nil:
		res.err = fmt.Errorf("%w: %w", res.err, hub.ErrInvalid)
	case c.n == 0:
		res.err = fmt.Errorf("empty file: expected at least one row: %w", hub.ErrInvalid)
	case c.want != "" && hex.EncodeToString(c.h.Sum(nil)) != c.want:
		res.err = fmt.Errorf("content of %d bytes has sha256 %s, expected %s (changed or cut in transit): %w",
			c.n, hex.EncodeToString(c.h.Sum(nil)), c.want, hub.ErrInvalid)
	}
	c.result = &res
	return res.err
}

// Rows returns the row count the format check made; valid once Read has
// returned io.EOF.
func (c *Checker) Rows() int64 {
	if c.result == nil {
		return 0
	}
	return c.result.rows
}

// Close ends the check if the content was not read to its end.
func (c *Checker) Close() error {
	if c.result == nil {
		_ = c.finish(errAbandoned)
	}
	return nil
}

// checkJSONL checks that every non-empty line of r is one JSON value and
// counts them.
func checkJSONL(r io.Reader) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		line      []byte
		rows, num int64
	)
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxLineBytes {
			return rows, fmt.Errorf("line %d: longer than %d bytes", num+1, MaxLineBytes)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(line) > 0 {
			num++
			if t := bytes.TrimSpace(line); len(t) > 0 {
				var v json.RawMessage
				if jerr := json.Unmarshal(t, &v); jerr != nil {
					return rows, fmt.Errorf("line %d: not one JSON value (JSON Lines expected): %v", num, jerr)
				}
				rows++
			}
		}
		line = line[:0]
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return rows, err
		}
	}
}

// checkCSV checks that r is CSV whose records all have the header's number
// of fields and counts the records after the header.
func checkCSV(r io.Reader) (int64, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	var records int64
	for {
		_, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("CSV: %v", err)
		}
		records++
	}
	if records == 0 {
		return 0, errors.New("CSV: no header row")
	}
	return records - 1, nil
}
