package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

func TestOrderMetric(t *testing.T) {
	for in, want := range map[string]string{
		"metrics.acc":            "acc",
		"metrics.acc:desc":       "acc",
		"metrics.train/loss:ASC": "train/loss",
		"metrics.a:b":            "a:b",
		"params.lr":              "",
		"created_at":             "",
		"":                       "",
	} {
		if got := orderMetric(in); got != want {
			t.Errorf("orderMetric(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseKV(t *testing.T) {
	m, err := parseKV("tag", []string{"a=1", "b=x=y", "c="})
	if err != nil || m["a"] != "1" || m["b"] != "x=y" || m["c"] != "" || len(m) != 3 {
		t.Errorf("parseKV = %v, %v", m, err)
	}
	for _, bad := range []string{"novalue", "=v", "bad key=1"} {
		if _, err := parseKV("tag", []string{bad}); ExitCode(err) != 2 {
			t.Errorf("parseKV(%q): %v, want a usage error", bad, err)
		}
	}
}

func TestCompareRows(t *testing.T) {
	runs := []*hub.Run{
		{Status: hub.StatusCompleted, Params: map[string]string{"lr": "0.1", "opt": "sgd"}, Metrics: map[string]float64{"acc": 0.5}},
		{Status: hub.StatusCompleted, Params: map[string]string{"lr": "0.2", "opt": "sgd"}, Metrics: map[string]float64{"acc": 0.5, "loss": 1}},
	}
	rows := compareRows(runs)
	want := []compareRow{
		{"status", []string{"completed", "completed"}, false},
		{"params.lr", []string{"0.1", "0.2"}, true},
		{"params.opt", []string{"sgd", "sgd"}, false},
		{"metrics.acc", []string{"0.5", "0.5"}, false},
		{"metrics.loss", []string{"", "1"}, true},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v, want %+v", rows, want)
	}
	for i := range want {
		if rows[i].Field != want[i].Field || strings.Join(rows[i].Values, "|") != strings.Join(want[i].Values, "|") || rows[i].Differ != want[i].Differ {
			t.Errorf("row %d = %+v, want %+v", i, rows[i], want[i])
		}
	}
}

func TestFmtDuration(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(90*time.Second + 400*time.Millisecond)
	if got := fmtDuration(&t0, &t1, t0); got != "1m30s" {
		t.Errorf("ended run: %q", got)
	}
	if got := fmtDuration(&t0, nil, t0.Add(2*time.Hour+20*time.Second)); got != "2h0m0s" {
		t.Errorf("running run: %q", got)
	}
	if got := fmtDuration(nil, nil, t0); got != "-" {
		t.Errorf("queued run: %q", got)
	}
}

func TestWriteYAMLUsesWireNames(t *testing.T) {
	var b bytes.Buffer
	if err := writeYAML(&b, hub.Workspace{Name: "w", Experiments: 2}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"name: w\n", "experiments: 2\n", "created_at: "} {
		if !strings.Contains(out, want) {
			t.Errorf("yaml %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "{") {
		t.Errorf("yaml is in flow style: %q", out)
	}
}

func tgz(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for _, h := range hdrs {
		body := ""
		if h.Typeflag == tar.TypeReg {
			body = "content of " + h.Name
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	return b.Bytes()
}

func TestUntar(t *testing.T) {
	tests := []struct {
		name    string
		hdrs    []*tar.Header
		wantErr string
	}{
		{"files dirs and an inner symlink", []*tar.Header{
			{Name: "./", Typeflag: tar.TypeDir},
			{Name: "lib/", Typeflag: tar.TypeDir},
			{Name: "lib/a.py", Typeflag: tar.TypeReg, Mode: 0o644},
			{Name: "run.sh", Typeflag: tar.TypeReg, Mode: 0o755},
			{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "lib/a.py"},
		}, ""},
		{"parent escape", []*tar.Header{{Name: "../evil", Typeflag: tar.TypeReg}}, `entry "../evil" leaves the target directory`},
		{"absolute", []*tar.Header{{Name: "/etc/evil", Typeflag: tar.TypeReg}}, "leaves the target directory"},
		{"symlink escape", []*tar.Header{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "../../x"}}, "points outside the snapshot"},
		{"absolute symlink", []*tar.Header{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}}, "points outside the snapshot"},
		{"device", []*tar.Header{{Name: "dev", Typeflag: tar.TypeChar}}, "unsupported type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := untar(bytes.NewReader(tgz(t, tt.hdrs...)), dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(dir, "link"))
			if err != nil || string(data) != "content of lib/a.py" {
				t.Errorf("through the symlink: %q, %v", data, err)
			}
			fi, err := os.Stat(filepath.Join(dir, "run.sh"))
			if err != nil || fi.Mode().Perm()&0o100 == 0 {
				t.Errorf("run.sh mode %v, %v; want executable", fi.Mode(), err)
			}
		})
	}
	if err := untar(strings.NewReader("not gzip"), t.TempDir()); err == nil || !strings.Contains(err.Error(), "gunzip") {
		t.Errorf("non-gzip input: %v", err)
	}
}

func TestExitCode(t *testing.T) {
	if got := ExitCode(usageError("x")); got != 2 {
		t.Errorf("usage error: %d", got)
	}
	if got := ExitCode(&exitError{Code: 7}); got != 7 {
		t.Errorf("exit error: %d", got)
	}
	if got := ExitCode(os.ErrNotExist); got != 1 {
		t.Errorf("plain error: %d", got)
	}
	if got := ExitCode(nil); got != 0 {
		t.Errorf("nil: %d", got)
	}
}

func TestMainExitCodes(t *testing.T) {
	env := func(string) string { return "" }
	tests := []struct {
		name     string
		args     []string
		code     int
		stderrRE string
	}{
		{"unknown command", []string{"bogus"}, 2, `^atelier: unknown command "bogus" for "atelier"\nRun 'atelier --help' for usage.\n$`},
		{"unknown flag", []string{"workspace", "list", "--nope"}, 2, `^atelier: unknown flag: --nope\n`},
		{"missing arg", []string{"workspace", "show"}, 2, `missing NAME`},
		{"no workspace", []string{"run", "list"}, 2, `^atelier: no workspace`},
		{"hub down", []string{"workspace", "list", "--hub", "http://127.0.0.1:1"}, 1, `^atelier: hub is not reachable at http://127.0.0.1:1 \(connection refused\); start one with ` + "`atelier hub serve`"},
		{"help", []string{"--help"}, 0, `^$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(t.Context(), tt.args, &stdout, &stderr, env, nil)
			if code != tt.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			if !regexp.MustCompile(tt.stderrRE).MatchString(stderr.String()) {
				t.Errorf("stderr %q does not match %q", stderr.String(), tt.stderrRE)
			}
		})
	}
}

func TestNormalizeHubURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8780/": "http://127.0.0.1:8780",
		"127.0.0.1:8780":         "http://127.0.0.1:8780",
		"https://hub.example":    "https://hub.example",
		"ftp://x":                "",
		"http://":                "",
	} {
		got, err := normalizeHubURL(in)
		if want == "" {
			if ExitCode(err) != 2 {
				t.Errorf("normalizeHubURL(%q) = %q, %v; want a usage error", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("normalizeHubURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
