package cli

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/atelier-ml/atelier/internal/runner"
)

func (a *app) runSubmitCmd() *cobra.Command {
	var (
		experiment string
		params     []string
		tags       []string
		dir        string
		name       string
		datasets   []string
	)
	cmd := &cobra.Command{
		Use:   "submit -e EXPERIMENT [flags] -- COMMAND [ARGS...]",
		Short: "Run a training command locally as a recorded run",
		Long: `Snapshot --dir (honouring .gitignore and .atelierignore), record a run in the
experiment, run COMMAND in a fresh copy of the snapshot and stream its logs,
metrics, params and tags to the hub; files it writes under outputs/ become
artifacts. The exit code is the command's.

The command reports metrics, params and tags by printing lines such as
"::metric name=loss value=0.25 step=3" on stdout; see internal/runner.

Each --dataset NAME[:VERSION] (the latest by default) is resolved before the
run is created, recorded as param dataset/NAME=NAME:VERSION, and downloaded
(sha256 verified) into datasets/ of the working copy before the command starts,
as datasets/NAME.jsonl (.csv, .bin by format); the command finds its path in
ATELIER_DATASET_<NAME> (upper-cased, other characters than A-Z and 0-9 as _).
See docs/datasets.md.`,
		Example: `  atelier run submit -w vision -e resnet --param lr=0.01 -- python train.py --epochs 3
  atelier run submit -w vision -e resnet --dataset capture-digits:3 -- python train.py`,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() < 0 || len(args) == 0 {
				return usageError("%s: give the command to run after --", cmd.CommandPath())
			}
			if cmd.ArgsLenAtDash() > 0 {
				return usageError("%s: unexpected arguments %q before --", cmd.CommandPath(), args[:cmd.ArgsLenAtDash()])
			}
			return nil
		},
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			if experiment == "" {
				return usageError("%s: -e/--experiment is required", cmd.CommandPath())
			}
			p, err := parseKV("param", params)
			if err != nil {
				return err
			}
			t, err := parseKV("tag", tags)
			if err != nil {
				return err
			}
			inputs, err := a.resolveDatasets(cmd.Context(), ws, datasets)
			if err != nil {
				return err
			}
			for _, in := range inputs {
				if p == nil {
					p = map[string]string{}
				}
				if old, ok := p[in.param()]; ok && old != in.d.Ref() {
					return usageError("--param %s=%s: the param records --dataset %s", in.param(), old, in.d.Ref())
				}
				p[in.param()] = in.d.Ref()
			}
			opts := runner.Options{
				Workspace:  ws,
				Experiment: experiment,
				Name:       name,
				Dir:        dir,
				Command:    args,
				Params:     p,
				Tags:       t,
				HubURL:     a.hubURL,
				Env:        os.Environ(),
			}
			if len(inputs) > 0 {
				opts.Prepare = func(ctx context.Context, work string) ([]string, error) {
					return a.fetchDatasets(ctx, ws, inputs, work)
				}
			}
			code, err := runner.Submit(cmd.Context(), a.client(), opts, a.stdout, a.stderr, a.log)
			if err != nil && code == 0 {
				code = 1
			}
			if err != nil || code != 0 {
				return &exitError{Code: code, Err: err}
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVarP(&experiment, "experiment", "e", "", "experiment of the run (created if missing)")
	f.StringArrayVarP(&params, "param", "p", nil, "param KEY=VALUE (repeatable)")
	f.StringArrayVar(&tags, "tag", nil, "tag KEY=VALUE (repeatable)")
	f.StringVar(&dir, "dir", ".", "directory to snapshot and run in")
	f.StringVar(&name, "name", "", "name of the run")
	f.StringArrayVar(&datasets, "dataset", nil, "dataset NAME[:VERSION] to download into datasets/ of the working copy (repeatable)")
	_ = cmd.RegisterFlagCompletionFunc("experiment", a.completeExperiments)
	return cmd
}
