package hub_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/atelier-ml/atelier/hub"
)

func TestParseModelRef(t *testing.T) {
	for _, tc := range []struct {
		in   string
		name string
		ref  hub.VersionRef
		bad  string
	}{
		{"m", "m", hub.VersionRef{}, ""},
		{"m:3", "m", hub.VersionRef{Version: 3}, ""},
		{"m:latest", "m", hub.VersionRef{}, ""},
		{"m@prod", "m", hub.VersionRef{Alias: "prod"}, ""},
		{"m:0", "", hub.VersionRef{}, `version "0"`},
		{"m:prod", "", hub.VersionRef{}, "use NAME@ALIAS"},
		{"m:", "", hub.VersionRef{}, `version ""`},
		{"m@1", "", hub.VersionRef{}, `alias "1"`},
		{"bad name:1", "", hub.VersionRef{}, `model name "bad name"`},
	} {
		name, ref, err := hub.ParseModelRef(tc.in)
		if tc.bad != "" {
			if !errors.Is(err, hub.ErrInvalid) || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%q: got %v, want an error containing %q", tc.in, err, tc.bad)
			}
			continue
		}
		if err != nil || name != tc.name || ref != tc.ref {
			t.Errorf("%q: got %q %+v %v", tc.in, name, ref, err)
		}
	}
}

func TestDimJSON(t *testing.T) {
	in := []hub.Dim{{Value: -1, Param: "batch"}, {Value: 4}, {Value: -1}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `["batch",4,-1]` {
		t.Errorf("marshal: %s", b)
	}
	var out []hub.Dim
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 || out[0] != in[0] || out[1] != in[1] || out[2] != in[2] {
		t.Errorf("round trip: %+v", out)
	}
	if s := hub.ShapeString(out); s != "[batch,4,?]" {
		t.Errorf("ShapeString: %s", s)
	}
}

// FuzzParseModelRef: any input parses or is refused with ErrInvalid, and a
// parsed reference renders back to one that parses the same.
func FuzzParseModelRef(f *testing.F) {
	for _, s := range []string{"m", "m:3", "m:latest", "m@prod", "m:", "m@", ":1", "m:01", "m:99999999999999999999", "a@b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, ref, err := hub.ParseModelRef(s)
		if err != nil {
			if !errors.Is(err, hub.ErrInvalid) {
				t.Fatalf("%q: error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		if hub.CheckName("model", name) != nil || ref.Version < 0 || (ref.Alias != "" && hub.CheckAlias(ref.Alias) != nil) {
			t.Fatalf("%q: accepted invalid parts %q %+v", s, name, ref)
		}
		name2, ref2, err := hub.ParseModelRef(name + ref.String())
		if err != nil || name2 != name || ref2 != ref {
			t.Fatalf("%q -> %q %+v -> %q %+v, %v", s, name, ref, name2, ref2, err)
		}
	})
}
