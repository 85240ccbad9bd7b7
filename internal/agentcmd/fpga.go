package agentcmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/atelier-ml/atelier/agent"
	"github.com/atelier-ml/atelier/agent/fpgahost"
	"github.com/atelier-ml/atelier/fpga"
	"github.com/atelier-ml/atelier/fpga/compiler"
	"github.com/atelier-ml/atelier/fpga/emu"
	"github.com/atelier-ml/atelier/fpga/isa"
	"github.com/atelier-ml/atelier/internal/onnx"
	agentv1 "github.com/atelier-ml/atelier/proto/agent/v1"
	"github.com/atelier-ml/atelier/scoring"
	"github.com/atelier-ml/atelier/scoring/ort"
)

// newFPGACmd is `atelier-agent fpga`: tools for FPGA hosts.
func newFPGACmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fpga",
		Short: "FPGA host tools: the card emulator and the model compiler",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newFPGASimCmd(stdout, stderr), newFPGACompileCmd(stdout, stderr))
	return cmd
}

func newFPGACompileCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		device, calibPath string
		batch, maxSamples int
		requireFull       bool
		disasm            bool
		cacheDir          string
	)
	cmd := &cobra.Command{
		Use:   "compile MODEL.onnx --calibration FILE [flags]",
		Short: "Compile an ONNX model for the FPGA card and report what runs where",
		Long: `Compile MODEL.onnx for the card at --device (or, without --device, for the
default emulated card) with int8 post-training quantization calibrated on
--calibration (CSV, one sample per line, extra trailing columns ignored; or
an ONNX TensorProto). Prints the layers that run on the card, the nodes
left on the CPU and why, and the modelled cycles per kernel iteration.
With --require-full a model that does not map entirely is an error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(cmd, stderr)
			if err != nil {
				return err
			}
			if calibPath == "" {
				return fmt.Errorf("%w: --calibration is required", errUsage)
			}
			model, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			info := emuInfo(emu.DefaultConfig())
			if device != "" {
				dev, err := fpga.Open(cmd.Context(), device, fpga.Config{}, log)
				if err != nil {
					return err
				}
				info, err = dev.Info(cmd.Context())
				dev.Close()
				if err != nil {
					return err
				}
			}
			m, err := onnx.Decode(model)
			if err != nil {
				return fmt.Errorf("model %s: %w", args[0], err)
			}
			sig := m.Signature()
			if len(sig.Inputs) == 0 {
				return fmt.Errorf("model %s has no inputs", args[0])
			}
			per := 1
			for _, d := range sig.Inputs[0].Shape[min(1, len(sig.Inputs[0].Shape)):] {
				per *= int(max(d.Value, 1))
			}
			f, err := os.Open(calibPath)
			if err != nil {
				return err
			}
			calib, err := compiler.ReadCalibration(f, per, maxSamples)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", calibPath, err)
			}
			a, err := compiler.Compile(model, calib, info, compiler.Options{Batch: batch, RequireFull: requireFull, CacheDir: cacheDir}, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "device %s\n", info)
			if a.Image == nil {
				fmt.Fprintln(stdout, "on the card: nothing")
			} else {
				fmt.Fprintf(stdout, "on the card (%d samples per iteration, %d modelled cycles = %.1f µs per iteration):\n", a.Plan.Batch, a.Plan.EstCycles, float64(a.Plan.EstCycles)/float64(info.ClockHz)*1e6)
				for _, op := range a.DeviceOps {
					fmt.Fprintf(stdout, "  %s\n", op)
				}
			}
			if len(a.Unsupported) > 0 {
				fmt.Fprintln(stdout, "on the CPU (ONNX Runtime):")
				for _, u := range a.Unsupported {
					fmt.Fprintf(stdout, "  %s\n", u)
				}
			}
			if disasm && a.Image != nil {
				p, err := isa.Decode(a.Image)
				if err != nil {
					return err
				}
				fmt.Fprint(stdout, p.Disassemble())
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&device, "device", "", "card to compile for, e.g. unix:/run/atelier/fpga.sock (default: the emulator's defaults)")
	fl.StringVar(&calibPath, "calibration", "", "calibration samples: CSV or ONNX TensorProto (required)")
	fl.IntVar(&maxSamples, "max-samples", 0, "use at most this many calibration samples (0: all)")
	fl.IntVar(&batch, "batch", 0, "samples per kernel iteration (0: 32)")
	fl.BoolVar(&requireFull, "require-full", false, "fail unless the whole model runs on the card")
	fl.BoolVar(&disasm, "disasm", false, "print the program")
	fl.StringVar(&cacheDir, "cache-dir", "", "keep compiled artifacts in this directory")
	return cmd
}

// emuInfo describes an emulated card with cfg without starting one.
func emuInfo(c emu.Config) fpga.Info {
	return fpga.Info{Name: c.Name, Firmware: c.Firmware, Rows: c.Rows, Cols: c.Cols, ClockHz: c.ClockHz, DRAMBytes: c.DRAMBytes,
		SPADBytes: c.SPADBytes, ACCWords: c.ACCWords, DMABytesPerCycle: c.DMABytesPerCycle, DMASetupCycles: c.DMASetupCycles,
		VectorLanes: c.VectorLanes, GatherBytes: c.GatherBytes}
}

func newFPGASimCmd(stdout, stderr io.Writer) *cobra.Command {
	def := emu.DefaultConfig()
	var (
		socket  string
		cfg     = def
		dramMiB uint64
		spadKiB int
	)
	cmd := &cobra.Command{
		Use:   "sim --socket PATH [flags]",
		Short: "Run the FPGA card emulator on a Unix socket until SIGINT or SIGTERM",
		Long: `Run the emulated int8 inference card (see docs/fpga.md) and answer the
device protocol on a Unix socket. The FPGA backend and the shim reach it as
"unix:PATH". A stale socket file left by a dead emulator is replaced; a
socket another process serves on is an error.

The first line on stdout is "listening on unix:PATH".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(cmd, stderr)
			if err != nil {
				return err
			}
			if socket == "" {
				return fmt.Errorf("%w: --socket is required", errUsage)
			}
			cfg.DRAMBytes = dramMiB << 20
			cfg.SPADBytes = spadKiB << 10
			if cfg.Rows <= 0 || cfg.Cols <= 0 || cfg.ClockHz == 0 || dramMiB == 0 || spadKiB <= 0 || cfg.ACCWords <= 0 {
				return fmt.Errorf("%w: --rows, --cols, --clock-hz, --dram-mib, --spad-kib and --acc-words must be positive", errUsage)
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("%w: %w", errUsage, err)
			}
			l, err := emu.ListenUnix(socket)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "listening on unix:%s\n", socket)
			return emu.Serve(cmd.Context(), l, cfg, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&socket, "socket", "", "Unix socket path to serve on (required)")
	f.StringVar(&cfg.Name, "name", def.Name, "card name reported by info")
	f.StringVar(&cfg.Firmware, "firmware", def.Firmware, "firmware/bitstream id reported by info (part of compiler cache keys)")
	f.IntVar(&cfg.Rows, "rows", def.Rows, "systolic array rows")
	f.IntVar(&cfg.Cols, "cols", def.Cols, "systolic array columns")
	f.Uint64Var(&cfg.ClockHz, "clock-hz", def.ClockHz, "modelled clock in Hz (device time = cycles / clock)")
	f.Uint64Var(&dramMiB, "dram-mib", def.DRAMBytes>>20, "on-card memory in MiB")
	f.IntVar(&spadKiB, "spad-kib", def.SPADBytes>>10, "on-chip scratchpad in KiB")
	f.IntVar(&cfg.ACCWords, "acc-words", def.ACCWords, "on-chip int32 accumulator words")
	f.BoolVar(&cfg.Pace, "pace", false, "make each kernel run take at least its modelled device time")
	return cmd
}

// fpgaOptions are the FPGA host flags of `score` and `run`.
type fpgaOptions struct {
	target      string   // --fpga unix:PATH
	calibration []string // --fpga-calibration [MODEL=]FILE
	fallback    bool     // --fpga-cpu-fallback
	cacheDir    string   // --fpga-cache-dir
	batch       int      // --fpga-batch
}

// FPGALabel is the label an FPGA agent adds to its enrollment unless
// --label sets the key: deployments reach FPGA hosts with
// --selector accelerator=fpga.
const FPGALabel = "accelerator=fpga"

// fpgaKind is an FPGA agent's Capabilities.kind (hub.KindFPGA).
const fpgaKind = "fpga"

func addFPGAFlags(f *pflag.FlagSet, o *fpgaOptions, forRun bool) {
	f.StringVar(&o.target, "fpga", "", "FPGA card to serve on, e.g. unix:/run/atelier/fpga.sock (an `atelier-agent fpga sim` socket)")
	calib := "calibration samples for int8 quantization as MODEL=FILE (the file for model MODEL) or FILE (every other model); CSV, one sample per line, or an ONNX TensorProto (repeatable)"
	if forRun {
		calib = "calibration samples for int8 quantization as MODEL=FILE (for the registered model MODEL) or FILE (every other model); CSV, one sample per line, or an ONNX TensorProto (repeatable)"
	}
	f.StringArrayVar(&o.calibration, "fpga-calibration", nil, calib)
	f.BoolVar(&o.fallback, "fpga-cpu-fallback", false, "score on the CPU when the card stays down after a reset (else such requests fail with 500)")
	cache := "keep compiled programs in this directory (default: none)"
	if forRun {
		cache = "keep compiled programs in this directory (default DATA/fpga-cache)"
	}
	f.StringVar(&o.cacheDir, "fpga-cache-dir", "", cache)
	f.IntVar(&o.batch, "fpga-batch", 0, "samples per kernel iteration (0: the compiler's default, 32)")
}

// parseCalibration splits [MODEL=]FILE flags into the host's map.
func parseCalibration(specs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range specs {
		name, path, ok := strings.Cut(s, "=")
		if !ok {
			name, path = "", s
		}
		if path == "" || (ok && name == "") {
			return nil, fmt.Errorf("%w: --fpga-calibration %q: want MODEL=FILE or FILE", errUsage, s)
		}
		if _, dup := out[name]; dup {
			what := "the default file"
			if name != "" {
				what = fmt.Sprintf("model %q", name)
			}
			return nil, fmt.Errorf("%w: --fpga-calibration %q: %s given twice", errUsage, s, what)
		}
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("%w: --fpga-calibration %q: %w", errUsage, s, err)
		}
		out[name] = path
	}
	return out, nil
}

// openFPGAHost checks the FPGA flags and opens the card.
func openFPGAHost(ctx context.Context, o fpgaOptions, oc ort.Config, log *slog.Logger) (*fpgahost.Host, error) {
	if o.target == "" {
		return nil, fmt.Errorf("%w: --fpga unix:PATH is required with the fpga backend", errUsage)
	}
	if o.batch < 0 {
		return nil, fmt.Errorf("%w: --fpga-batch %d: want >= 0", errUsage, o.batch)
	}
	calib, err := parseCalibration(o.calibration)
	if err != nil {
		return nil, err
	}
	if len(calib) == 0 {
		return nil, fmt.Errorf("%w: the fpga backend needs calibration samples: give --fpga-calibration FILE (or MODEL=FILE per model)", errUsage)
	}
	return fpgahost.Open(ctx, fpgahost.Config{Target: o.target, CacheDir: o.cacheDir, FallbackCPU: o.fallback,
		Calibration: calib, Batch: o.batch, ORT: oc}, log)
}

// openFPGAAgent makes `run` an FPGA agent when --fpga is given: it opens
// the card (before enrollment, so a missing card spends no join token),
// sets the capabilities' kind to fpga and their card, and adds FPGALabel
// to the enrollment labels unless --label sets its key. Without --fpga it
// returns nil, and an error if another FPGA flag was given.
func openFPGAAgent(ctx context.Context, o *runOptions, caps *agentv1.Capabilities, log *slog.Logger) (*fpgahost.Host, error) {
	fo := o.scoring.fpga
	if fo.target == "" {
		if len(fo.calibration) > 0 || fo.fallback || fo.cacheDir != "" || fo.batch != 0 {
			return nil, fmt.Errorf("%w: --fpga-calibration, --fpga-cpu-fallback, --fpga-cache-dir and --fpga-batch need --fpga unix:PATH", errUsage)
		}
		return nil, nil
	}
	if fo.cacheDir == "" {
		fo.cacheDir = filepath.Join(o.dataDir, "fpga-cache")
	}
	host, err := openFPGAHost(ctx, fo, ort.Config{LibraryPath: o.scoring.ortLib, IntraOpThreads: o.scoring.threads}, log)
	if err != nil {
		return nil, err
	}
	caps.Kind = fpgaKind
	caps.Fpga = host.Capabilities()
	labels, err := parseLabels(o.labels)
	if err != nil {
		host.Close()
		return nil, err
	}
	key, _, _ := strings.Cut(FPGALabel, "=")
	if _, set := labels[key]; !set {
		o.labels = append(o.labels, FPGALabel)
	}
	log.Info("fpga agent", "card", host.Info().String())
	return host, nil
}

// fpgaOpen is edge.DaemonConfig.Open for host (nil: ONNX Runtime).
func fpgaOpen(host *fpgahost.Host) func(context.Context, *agentv1.DeploymentSpec, string) (scoring.Runner, error) {
	if host == nil {
		return nil
	}
	return host.Open
}

// fpgaDevices is agent.Config.Devices for host (nil without a card).
func fpgaDevices(host *fpgahost.Host) agent.DeviceReporter {
	if host == nil {
		return nil
	}
	return host
}
