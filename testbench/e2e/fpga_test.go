package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atelier-ml/atelier/agent"
	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/server"
	"github.com/atelier-ml/atelier/testbench/sample"
)

// FPGA accuracy bounds against ONNX Runtime on the CPU (docs/fpga.md):
// every probability within fpgaProbTol, and top-1 agreement of at least
// fpgaMinAgreement over the evaluation rows.
const (
	fpgaProbTol      = 0.1
	fpgaMinAgreement = 0.99
	fpgaCalibRows    = 100 // held-out rows used for calibration; the rest are scored
)

// TestFPGAAgentEndToEnd is issue 6's agent part with the real binaries: an
// emulated card (`atelier-agent fpga sim`), a hub, and an FPGA agent
// (`atelier-agent run --fpga`). It checks that a missing card fails the
// agent before enrollment, that the agent enrolls as kind fpga with its
// card in its capabilities and the accelerator=fpga label, that a
// deployment by selector reaches it and serves outputs within tolerance of
// ONNX Runtime, that a card reset is recovered from transparently, that a
// card stuck for good fails requests with a clear error (no CPU fallback),
// that the agent serves from the card again once the emulator is
// restarted, and that `atelier-agent score --backend fpga
// --fpga-cpu-fallback` serves from its card and, once the card is stuck,
// from the CPU.
func TestFPGAAgentEndToEnd(t *testing.T) {
	began := time.Now()
	root := repoRoot(t)
	atelier, agentBin := buildBinaries(t, root)
	t.Logf("binaries built in %s", time.Since(began).Round(time.Millisecond))

	dir := t.TempDir()
	model, heldout := trainOne(t, dir)
	calibPath := filepath.Join(dir, "calib.csv")
	evalRows := splitHeldout(t, heldout, calibPath, fpgaCalibRows)
	want := scoreInProcess(t, model, evalRows)

	// The card.
	sock := filepath.Join(dir, "card.sock")
	card := startCard(t, agentBin, sock)

	hubData := filepath.Join(dir, "hub")
	_, addrs := startHub(t, atelier, hubData, server.Addrs{HTTP: "127.0.0.1:0", MQTT: "127.0.0.1:0", NATS: "127.0.0.1:0"})
	hubURL := "http://" + addrs.HTTP
	const ws = "fpga"
	run := func(args ...string) []byte { return cli(t, atelier, hubURL, ws, args...) }
	run("workspace", "create", ws)
	run("model", "register", "digits", "--file", model)
	var tok hub.JoinToken
	cliJSON(t, atelier, hubURL, ws, &tok, "agent", "token", "create")

	// A card that is not there fails the agent at start, before it spends
	// the join token.
	agentData := filepath.Join(dir, "agent")
	missing := filepath.Join(dir, "no-card.sock")
	out, err := exec.Command(agentBin, "run", "--hub", hubURL, "--join-token", tok.Token, "--data", agentData,
		"--listen", "127.0.0.1:0", "--fpga", "unix:"+missing, "--fpga-calibration", "digits="+calibPath).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "fpga device unavailable") || !strings.Contains(string(out), missing) {
		t.Fatalf("agent with a missing card: %v, want a failure naming the device and %s:\n%s", err, missing, out)
	}
	if _, err := os.Stat(filepath.Join(agentData, agent.CredentialsFile)); !os.IsNotExist(err) {
		t.Fatalf("agent with a missing card enrolled anyway (%v)", err)
	}

	// The FPGA agent enrolls with the same (unspent) token.
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := "http://" + listen
	agentProc := start(t, "fpga agent", agentBin, "run", "--hub", hubURL, "--join-token", tok.Token, "--data", agentData,
		"--listen", listen, "--fpga", "unix:"+sock, "--fpga-calibration", "digits="+calibPath, "--log-level", "warn")
	var creds agent.Credentials
	waitFor(t, 30*time.Second, "agent enrollment", func() error {
		if agentProc.exited() {
			t.Fatalf("agent exited: %v", agentProc.err)
		}
		b, err := os.ReadFile(filepath.Join(agentData, agent.CredentialsFile))
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &creds)
	})
	id := creds.AgentID

	// Deploy by selector: the agent labelled itself accelerator=fpga.
	run("deploy", "create", "digits", "--model", "digits:1", "--selector", "accelerator=fpga")
	waitServing(t, atelier, hubURL, ws, id, 1, time.Time{})
	t.Logf("deployed to the FPGA agent at %s", time.Since(began).Round(time.Millisecond))

	// The hub shows the agent's kind, label and card.
	var a hub.Agent
	cliJSON(t, atelier, hubURL, ws, &a, "agent", "show", id)
	if a.Kind != hub.KindFPGA || a.Labels["accelerator"] != "fpga" {
		t.Fatalf("agent show: kind %q, labels %v; want kind fpga and accelerator=fpga", a.Kind, a.Labels)
	}
	if d := a.Capabilities.FPGA; d == nil || d.Name != "cli-fpga-card" || d.Firmware != "e2e-fw-1" || d.ArrayRows != 16 || d.ArrayCols != 16 ||
		d.ClockMHz != 200 || d.MemoryBytes != 64<<20 {
		t.Fatalf("agent show: capabilities.fpga = %+v, want the emulated card (cli-fpga-card, e2e-fw-1, 16x16, 200 MHz, 64 MiB)", d)
	}

	got, err := score(base, evalRows)
	if err != nil {
		t.Fatal(err)
	}
	agree, maxErr := fpgaCompare(t, got, want)
	t.Logf("FPGA agent vs ONNX Runtime on %d held-out rows: top-1 agreement %.4f, max abs probability error %.4f",
		len(evalRows)/64, agree, maxErr)

	// The card resets under a request: the agent resets, reprograms and
	// retries; the request succeeds.
	inject(t, sock, fpga.FaultReset)
	got, err = score(base, evalRows)
	if err != nil {
		t.Fatalf("request during a card reset: %v", err)
	}
	fpgaCompare(t, got, want)

	// The card's DMA engine sticks for good: the agent (no CPU fallback)
	// fails the request with a clear error.
	inject(t, sock, fpga.FaultDMAStuck)
	_, err = score(base, evalRows)
	if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "fpga device down") ||
		!strings.Contains(err.Error(), "CPU fallback is off") {
		t.Fatalf("request on a stuck card without fallback: %v, want a 500 saying the device is down and the fallback is off", err)
	}

	// A new card (the emulator restarted on the same socket): the agent
	// reconnects, programs it and serves from the card again.
	card.kill()
	startCard(t, agentBin, sock)
	got, err = score(base, evalRows)
	if err != nil {
		t.Fatalf("request after the card came back: %v", err)
	}
	fpgaCompare(t, got, want)
	if match(got, want) == nil {
		t.Fatalf("after the card came back the agent answers exactly as ONNX Runtime: not from the card")
	}

	// `score --backend fpga --fpga-cpu-fallback` on a card of its own
	// serves from the card, and from the CPU once the card is stuck.
	sock2 := filepath.Join(dir, "card2.sock")
	startCard(t, agentBin, sock2)
	scoreListen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	scoreBase := "http://" + scoreListen
	scoreProc := start(t, "fpga score", agentBin, "score", "--backend", "fpga", "--fpga", "unix:"+sock2, "--fpga-cpu-fallback",
		"--fpga-calibration", calibPath, "--model", "digits="+model, "--listen", scoreListen, "--log-level", "warn")
	waitFor(t, 30*time.Second, "score --backend fpga", func() error {
		if scoreProc.exited() {
			t.Fatalf("score --backend fpga exited: %v", scoreProc.err)
		}
		_, err := score(scoreBase, evalRows[:64])
		return err
	})
	got, err = score(scoreBase, evalRows)
	if err != nil {
		t.Fatal(err)
	}
	fpgaCompare(t, got, want)
	if match(got, want) == nil {
		t.Fatalf("score --backend fpga answers exactly as ONNX Runtime: the card did not run the model")
	}
	inject(t, sock2, fpga.FaultDMAStuck)
	got, err = score(scoreBase, evalRows)
	if err != nil {
		t.Fatalf("score --fpga-cpu-fallback on a stuck card: %v", err)
	}
	if err := match(got, want); err != nil {
		t.Fatalf("CPU fallback answers differ from ONNX Runtime: %v", err)
	}
	if !strings.Contains(scoreProc.out.String(), "scoring on the CPU") {
		t.Fatalf("score --fpga-cpu-fallback did not log the fallback")
	}

	scoreProc.stop(t, 15*time.Second)
	agentProc.stop(t, 15*time.Second)
	t.Logf("FPGA end to end done in %s", time.Since(began).Round(time.Millisecond))
}

// startCard runs the emulator with a small card on sock and waits until it
// listens.
func startCard(t *testing.T, bin, sock string) *proc {
	t.Helper()
	p := start(t, "fpga sim", bin, "fpga", "sim", "--socket", sock, "--name", "cli-fpga-card", "--firmware", "e2e-fw-1",
		"--rows", "16", "--cols", "16", "--clock-hz", "200000000", "--dram-mib", "64", "--log-level", "warn")
	waitFor(t, 20*time.Second, "the emulator to listen", func() error {
		if p.exited() {
			t.Fatalf("fpga sim exited: %v\n%s", p.err, p.out.String())
		}
		if !strings.Contains(p.out.String(), "listening on unix:"+sock) {
			return fmt.Errorf("output so far: %q", p.out.String())
		}
		return nil
	})
	return p
}

// inject arms fault f on the card at sock for its next request.
func inject(t *testing.T, sock string, f fpga.Fault) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dev, err := fpga.Open(ctx, "unix:"+sock, fpga.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := dev.InjectFault(ctx, f, 0); err != nil {
		t.Fatalf("inject fault %d: %v", f, err)
	}
}

// trainOne builds the sample training program and trains one model into
// dir; it returns the model and its held-out CSV.
func trainOne(t *testing.T, dir string) (model, heldout string) {
	t.Helper()
	src := filepath.Join(dir, "train-src")
	if err := sample.CopyProgram(src); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", "train", ".")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the sample: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "trained")
	cmd := exec.Command(filepath.Join(src, "train"), "--epochs", "5", "--seed", "3", "--hidden", "32", "--out", out)
	cmd.Dir = src
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("train: %v\n%s", err, b)
	}
	return filepath.Join(out, "model.onnx"), filepath.Join(out, "heldout.csv")
}

// splitHeldout writes the first n rows of the held-out CSV to calib and
// returns the pixels of the others.
func splitHeldout(t *testing.T, heldout, calib string, n int) []float32 {
	t.Helper()
	f, err := os.Open(heldout)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cal strings.Builder
	var px []float32
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if line <= n {
			cal.WriteString(sc.Text() + "\n")
			continue
		}
		cols := strings.Split(sc.Text(), ",")
		if len(cols) != 65 {
			t.Fatalf("%s line %d: %d columns, want 65", heldout, line, len(cols))
		}
		for _, c := range cols[:64] {
			v, err := strconv.ParseFloat(c, 32)
			if err != nil {
				t.Fatalf("%s line %d: %v", heldout, line, err)
			}
			px = append(px, float32(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(px) < 64*100 {
		t.Fatalf("%s: %d evaluation rows after %d calibration rows, want at least 100", heldout, len(px)/64, n)
	}
	if err := os.WriteFile(calib, []byte(cal.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return px
}

// fpgaCompare checks the card's answers against ONNX Runtime's: every
// probability within fpgaProbTol and top-1 agreement of at least
// fpgaMinAgreement. It returns the agreement and the largest error.
func fpgaCompare(t *testing.T, got, want map[string][]float64) (agreement, maxErr float64) {
	t.Helper()
	const probs, label = "probabilities", "label"
	gp, wp, gl, wl := got[probs], want[probs], got[label], want[label]
	if len(wl) == 0 || len(wp) != 10*len(wl) || len(gp) != len(wp) || len(gl) != len(wl) {
		t.Fatalf("outputs: %d probabilities and %d labels, want %d and %d", len(gp), len(gl), len(wp), len(wl))
	}
	for i := range wp {
		maxErr = math.Max(maxErr, math.Abs(gp[i]-wp[i]))
	}
	same := 0
	for i := range wl {
		if gl[i] == wl[i] {
			same++
		}
	}
	agreement = float64(same) / float64(len(wl))
	if maxErr > fpgaProbTol || agreement < fpgaMinAgreement {
		t.Fatalf("FPGA vs ONNX Runtime: max abs probability error %.4f (bound %g), top-1 agreement %.4f (bound %g)",
			maxErr, fpgaProbTol, agreement, fpgaMinAgreement)
	}
	return agreement, maxErr
}

// TestFPGAFlagErrors checks that the FPGA flags of the real binary fail
// with usage errors (exit 2) that say what is missing or wrong.
func TestFPGAFlagErrors(t *testing.T) {
	_, agentBin := buildBinaries(t, repoRoot(t))
	dir := t.TempDir()
	model := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(model, []byte("not read before the flags are checked"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "card.sock")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"fpga backend without a card", []string{"score", "--backend", "fpga", "--model", "m=" + model}, "--fpga unix:PATH is required"},
		{"card without the fpga backend", []string{"score", "--fpga", "unix:" + sock, "--model", "m=" + model}, "needs --backend fpga"},
		{"unknown backend", []string{"score", "--backend", "gpu", "--model", "m=" + model}, `--backend "gpu": want cpu or fpga`},
		{"no calibration", []string{"score", "--backend", "fpga", "--fpga", "unix:" + sock, "--model", "m=" + model}, "needs calibration samples"},
		{"calibration file missing", []string{"score", "--backend", "fpga", "--fpga", "unix:" + sock, "--fpga-calibration", "m=" + filepath.Join(dir, "none.csv"),
			"--model", "m=" + model}, "none.csv"},
		{"calibration twice", []string{"score", "--backend", "fpga", "--fpga", "unix:" + sock, "--fpga-calibration", model, "--fpga-calibration", model,
			"--model", "m=" + model}, "the default file given twice"},
		{"fpga flags without --fpga", []string{"run", "--data", filepath.Join(dir, "agent"), "--fpga-cpu-fallback"}, "need --fpga unix:PATH"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := exec.Command(agentBin, c.args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), c.want) {
				t.Fatalf("atelier-agent %s: %v, want exit 2 and %q in:\n%s", strings.Join(c.args, " "), err, c.want, out)
			}
		})
	}
}
