package sample

import (
	"strings"
	"testing"
)

func TestReadRowsErrors(t *testing.T) {
	row := strings.Repeat("1,", 64)
	for _, tc := range []struct {
		name, csv, want string
	}{
		{"empty", "", "x.csv: no rows"},
		{"short row", "1,2,3\n", "x.csv line 1: 3 columns, want 65 (64 pixels and a label)"},
		{"bad pixel", row + "3\n" + strings.Replace(row, "1", "a", 1) + "3\n", `x.csv line 2 column 1: "a" is not a number`},
		{"bad label", row + "10\n", `x.csv line 1 column 65: label "10", want an integer 0-9`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadRows(strings.NewReader(tc.csv), "x.csv")
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	px, labels, err := ReadRows(strings.NewReader(row+"7\n\n"+row+"0\n"), "x.csv")
	if err != nil || len(px) != 128 || len(labels) != 2 || labels[0] != 7 || labels[1] != 0 {
		t.Fatalf("got %d pixels, labels %v, %v", len(px), labels, err)
	}
}
