package cli_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/atelier-ml/atelier/internal/cli"
)

// TestMain lets the test binary act as the atelier command inside scripts,
// so scripts run the real CLI as a separate process (which `kill -KILL`
// can end).
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"atelier": func() {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv, nil)
			stop()
			os.Exit(code)
		},
	})
}

// TestScripts runs testdata/script/*.txtar. Besides the built-in commands
// and atelier, scripts have:
//
//	waithub DATA_DIR
//	    wait (up to a minute) until the hub started on DATA_DIR has written
//	    DATA_DIR/hub.addr and answers /healthz, then set ATELIER_HUB to it.
//	api [-save VAR=FIELD]... METHOD PATH [BODY | @FILE]
//	    send a request to $ATELIER_HUB, print the answer on stdout; fail on
//	    a non-2xx status (use `! api` to expect one). -save sets VAR to the
//	    top-level string or number FIELD of the JSON answer.
//	targz OUT DIR
//	    write the files under DIR as a tar.gz (paths relative to DIR).
//	onnxmlp OUT IN OUTPUTS SEED
//	    write a small ONNX model (see model_script_test.go).
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "script"),
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waithub": cmdWaitHub,
			"api":     cmdAPI,
			"targz":   cmdTarGz,
			"onnxmlp": cmdONNXMLP,
		},
		Setup: func(env *testscript.Env) error {
			// No hub unless a script starts one: a stray default hub on
			// this machine must not answer.
			env.Setenv("ATELIER_HUB", "http://127.0.0.1:1")
			env.Setenv("ATELIER_WORKSPACE", "")
			return nil
		},
	})
}

func cmdWaitHub(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waithub DATA_DIR")
	}
	file := filepath.Join(ts.MkAbs(args[0]), "hub.addr")
	deadline := time.Now().Add(time.Minute)
	for {
		if data, err := os.ReadFile(file); err == nil {
			var addrs struct{ HTTP string }
			if json.Unmarshal(data, &addrs) == nil && addrs.HTTP != "" {
				url := "http://" + addrs.HTTP
				if resp, err := http.Get(url + "/healthz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						ts.Setenv("ATELIER_HUB", url)
						return
					}
				}
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("no hub answered from %s within a minute", file)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cmdAPI(ts *testscript.TestScript, neg bool, args []string) {
	var saves []string
	for len(args) >= 2 && args[0] == "-save" {
		saves = append(saves, args[1])
		args = args[2:]
	}
	if len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: api [-save VAR=FIELD]... METHOD PATH [BODY | @FILE]")
	}
	var body io.Reader
	if len(args) == 3 {
		if name, ok := strings.CutPrefix(args[2], "@"); ok {
			data, err := os.ReadFile(ts.MkAbs(name))
			ts.Check(err)
			body = bytes.NewReader(data)
		} else {
			body = strings.NewReader(args[2])
		}
	}
	req, err := http.NewRequest(args[0], ts.Getenv("ATELIER_HUB")+args[1], body)
	ts.Check(err)
	if body != nil && !strings.HasPrefix(args[len(args)-1], "@") {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	ts.Check(err)
	ts.Stdout().Write(data)
	if len(data) > 0 && data[len(data)-1] != '\n' {
		ts.Stdout().Write([]byte("\n"))
	}
	ok := resp.StatusCode/100 == 2
	if ok == neg {
		ts.Fatalf("%s %s: status %d", args[0], args[1], resp.StatusCode)
	}
	for _, s := range saves {
		name, field, found := strings.Cut(s, "=")
		if !found {
			ts.Fatalf("-save %q: want VAR=FIELD", s)
		}
		var obj map[string]any
		if err := json.Unmarshal(data, &obj); err != nil {
			ts.Fatalf("-save %s: answer is not a JSON object: %v", s, err)
		}
		v, found := obj[field]
		if !found {
			ts.Fatalf("-save %s: answer has no field %q", s, field)
		}
		ts.Setenv(name, fmt.Sprint(v))
	}
}

func cmdTarGz(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: targz OUT DIR")
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	dir := ts.MkAbs(args[1])
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	ts.Check(err)
	ts.Check(tw.Close())
	ts.Check(zw.Close())
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), buf.Bytes(), 0o644))
}
