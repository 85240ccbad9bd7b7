package fpgabench

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

func TestRunReportsEveryFigure(t *testing.T) {
	var buf bytes.Buffer
	if err := Run(context.Background(), []string{"--json", "--duration", "50ms"}, &buf); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", buf.String())
	var r Result
	if err := json.Unmarshal(buf.Bytes(), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, buf.String())
	}
	if r.DeviceUsPerInference <= 0 || r.ShimOverheadUs <= 0 || r.CPUORTUsPerInference <= 0 || r.EmulatorInferencesPerSec <= 0 || r.FPGARunP50Us <= 0 {
		t.Fatalf("missing figures: %+v", r)
	}
	if r.MaxAbsErrorVsCPU > 0.05 {
		t.Fatalf("device output differs from the reference by %g", r.MaxAbsErrorVsCPU)
	}
	if err := Run(context.Background(), []string{"--duration", "0s"}, &buf); err == nil {
		t.Fatal("--duration 0 accepted")
	}
}
