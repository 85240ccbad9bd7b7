package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/atelier-ml/atelier/hub"
)

func (a *app) deployCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Create, update, list, show and delete deployments of a workspace (-w)",
		Long: `A deployment puts one model version of a workspace on agents: the agents named
with --target (agent ids), or every agent whose labels match all --selector
KEY=VALUE pairs, including agents that enroll later. The model is given as
MODEL:VERSION, MODEL@ALIAS or MODEL (the latest version); an alias is resolved
once, when the deployment is created or updated, and the deployment keeps that
version (and records the alias) until it is updated again.

Deployment names are unique across the whole hub, not only in the workspace:
an agent serves every deployment it runs on one endpoint, at
/v2/models/{deployment name}.

The hub pushes each agent its full desired state; "deploy show" gives each
targeted agent's state (pending, downloading, loading, serving, failed) from
that agent's latest report, and the URL the deployment is served at.`,
	}
	cmd.AddCommand(a.deployCreateCmd(), a.deployUpdateCmd(), a.deployListCmd(), a.deployShowCmd(), a.deployDeleteCmd(),
		a.deployMetricsCmd(), a.deployDriftCmd(), a.deployCaptureCmd())
	for _, sub := range cmd.Commands() {
		if strings.Contains(sub.Use, " NAME") {
			sub.ValidArgsFunction = a.completeDeployments
		}
	}
	return cmd
}

// completeDeployments completes deployment names of the -w workspace.
func (a *app) completeDeployments(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if a.workspace == "" || len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	ds, err := a.client().ListDeployments(ctx, a.workspace)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names := make([]string, 0, len(ds))
	for _, d := range ds {
		names = append(names, d.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// deployFlags are the flags create and update share.
type deployFlags struct {
	model     string
	targets   []string
	selectors []string
	maxBatch  int
	maxDelay  string
	// guard rules
	rollbackIf  string
	probation   string
	minRequests int
	noGuard     bool // update only
	cpuFallback bool
}

func (f *deployFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", "", "model version: MODEL:VERSION, MODEL@ALIAS or MODEL (latest)")
	fl.StringArrayVar(&f.targets, "target", nil, "agent id to deploy to (repeatable; exclusive with --selector)")
	fl.StringArrayVar(&f.selectors, "selector", nil, "agent label KEY=VALUE an agent must carry (repeatable, all must match)")
	fl.IntVar(&f.maxBatch, "max-batch", 0, fmt.Sprintf("most requests merged into one inference run (0: the agent's default; at most %d)", hub.MaxDeploymentBatch))
	fl.StringVar(&f.maxDelay, "max-delay", "", fmt.Sprintf("longest a request waits to be batched, e.g. 2ms (at most %s)", hub.MaxDeploymentDelay))
	fl.BoolVar(&f.cpuFallback, "allow-cpu-fallback", false, "FPGA agents score on the CPU while their card is down (default: such requests fail)")
	fl.StringVar(&f.rollbackIf, "rollback-if", "", `guard rule: agents roll back to the previous version if it holds during probation, e.g. "error_rate > 0.05 or latency_p99 > 50ms"`)
	fl.StringVar(&f.probation, "probation", "", fmt.Sprintf("how long after the switch the guard rule is evaluated, e.g. 10m (default %s; with --rollback-if)", hub.DefaultProbation))
	fl.IntVar(&f.minRequests, "min-requests", 0, "requests the new version must answer before the rule is evaluated (0: the agent's default, 20; with --rollback-if)")
}

// guard returns the guard rules the flags give (nil for none) and checks
// them locally, so mistakes are usage errors.
func (f *deployFlags) guard() (*hub.GuardRules, error) {
	if f.rollbackIf == "" {
		if f.probation != "" || f.minRequests != 0 {
			return nil, usageError("--probation and --min-requests go with --rollback-if EXPR")
		}
		return nil, nil
	}
	g := &hub.GuardRules{RollbackIf: f.rollbackIf, Probation: f.probation, MinRequests: f.minRequests}
	if err := g.Check(); err != nil {
		return nil, usageError("%s", strings.TrimSuffix(err.Error(), ": "+hub.ErrInvalid.Error()))
	}
	return g, nil
}

// parse checks the flags locally, so mistakes are usage errors.
func (f *deployFlags) parse() (selector map[string]string, opts hub.RuntimeOptions, err error) {
	if f.model != "" {
		if _, _, err := parseRef(f.model); err != nil {
			return nil, opts, err
		}
	}
	if len(f.targets) > 0 && len(f.selectors) > 0 {
		return nil, opts, usageError("give --target or --selector, not both")
	}
	if selector, err = parseKV("selector", f.selectors); err != nil {
		return nil, opts, err
	}
	opts = hub.RuntimeOptions{MaxBatch: f.maxBatch, MaxDelay: f.maxDelay, AllowCPUFallback: f.cpuFallback}
	if err := opts.Check(); err != nil {
		return nil, opts, usageError("%s", strings.TrimSuffix(err.Error(), ": "+hub.ErrInvalid.Error()))
	}
	return selector, opts, nil
}

func (a *app) deployCreateCmd() *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   "create NAME --model MODEL[:VERSION|@ALIAS] (--target AGENT_ID ... | --selector KEY=VALUE ...)",
		Short: "Deploy a model version to agents by id or label selector",
		Args:  argsRange(1, 1, "NAME"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			if err := hub.CheckName("deployment", args[0]); err != nil {
				return usageError("%s", strings.TrimSuffix(err.Error(), ": "+hub.ErrInvalid.Error()))
			}
			if f.model == "" {
				return usageError("give the model with --model MODEL:VERSION or MODEL@ALIAS")
			}
			if len(f.targets) == 0 && len(f.selectors) == 0 {
				return usageError("give the agents with --target AGENT_ID or --selector KEY=VALUE")
			}
			selector, opts, err := f.parse()
			if err != nil {
				return err
			}
			guard, err := f.guard()
			if err != nil {
				return err
			}
			d, err := a.client().CreateDeployment(cmd.Context(), ws, hub.DeploymentCreate{Name: args[0], Model: f.model,
				Agents: f.targets, Selector: selector, Options: opts, Guard: guard})
			if err != nil {
				return err
			}
			return a.emit(d, func(out io.Writer) {
				fmt.Fprintf(out, "deployed %s as %s to %s\n", modelWithAlias(d), d.Name, targetsSummary(d))
			})
		}),
	}
	f.register(cmd)
	return cmd
}

func (a *app) deployUpdateCmd() *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   "update NAME [--model MODEL[:VERSION|@ALIAS]] [--target AGENT_ID ... | --selector KEY=VALUE ...] [--max-batch N] [--max-delay D] [--allow-cpu-fallback] [--rollback-if EXPR [--probation D] | --no-guard]",
		Short: "Change a deployment's model version, targets, runtime options or guard rules",
		Long: `Change a deployment. --model resolves the model again (an alias is looked up
now); --target or --selector replaces the targeting as a whole; --max-batch,
--max-delay and --allow-cpu-fallback replace the runtime options as a whole; --rollback-if (with --probation and
--min-requests) replaces the guard rules and --no-guard removes them. What is
not given is kept, guard rules included.`,
		Args: argsRange(1, 1, "NAME"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			selector, opts, err := f.parse()
			if err != nil {
				return err
			}
			du := hub.DeploymentUpdate{Model: f.model, Agents: f.targets, Selector: selector}
			if cmd.Flags().Changed("max-batch") || cmd.Flags().Changed("max-delay") || cmd.Flags().Changed("allow-cpu-fallback") {
				du.Options = &opts
			}
			if du.Guard, err = f.guard(); err != nil {
				return err
			}
			if f.noGuard {
				if du.Guard != nil {
					return usageError("give --rollback-if or --no-guard, not both")
				}
				du.Guard = &hub.GuardRules{}
			}
			if du.Model == "" && len(du.Agents) == 0 && len(du.Selector) == 0 && du.Options == nil && du.Guard == nil {
				return usageError("nothing to change: give --model, --target, --selector, --max-batch, --max-delay, --allow-cpu-fallback, --rollback-if or --no-guard")
			}
			d, err := a.client().UpdateDeployment(cmd.Context(), ws, args[0], du)
			if err != nil {
				return err
			}
			return a.emit(d, func(out io.Writer) {
				fmt.Fprintf(out, "updated %s: %s to %s\n", d.Name, modelWithAlias(d), targetsSummary(d))
			})
		}),
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&f.noGuard, "no-guard", false, "remove the deployment's guard rules")
	return cmd
}

func (a *app) deployListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List deployments: model version, targeting, and how many targets serve it",
		Args:  argsRange(0, 0, "no arguments"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			ds, err := a.client().ListDeployments(cmd.Context(), ws)
			if err != nil {
				return err
			}
			if ds == nil {
				ds = []hub.Deployment{}
			}
			return a.emit(ds, func(out io.Writer) {
				fmt.Fprintln(out, "NAME\tMODEL\tTARGETS\tSERVING\tUPDATED")
				for _, d := range ds {
					fmt.Fprintf(out, "%s\t%s\t%s\t%d/%d\t%s\n", d.Name, modelWithAlias(&d), targeting(&d),
						countState(&d, hub.TargetServing), len(d.Targets), fmtTime(&d.UpdatedAt))
				}
			})
		}),
	}
}

func (a *app) deployShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a deployment and the state of each agent it targets",
		Long: `Show a deployment and, per targeted agent, its state (pending until the agent
reports the deployment; downloading, loading, serving, failed, rolled_back),
the model version it reports, its error, and the URL it serves the deployment
at. A target reads pending while its agent still serves another version, and
rolled_back when a guard rule held during probation and the agent went back
to the version it served before (VERSION is that one; ERROR says why).`,
		Args: argsRange(1, 1, "NAME"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			d, err := a.client().GetDeployment(cmd.Context(), ws, args[0])
			if err != nil {
				return err
			}
			return a.emit(d, func(out io.Writer) {
				fmt.Fprintf(out, "Name:\t%s\n", d.Name)
				fmt.Fprintf(out, "Model:\t%s\n", modelWithAlias(d))
				fmt.Fprintf(out, "SHA256:\t%s\n", d.SHA256)
				fmt.Fprintf(out, "Targets:\t%s\n", targeting(d))
				batch, delay := "default", "default"
				if d.Options.MaxBatch > 0 {
					batch = fmt.Sprint(d.Options.MaxBatch)
				}
				if d.Options.MaxDelay != "" {
					delay = d.Options.MaxDelay
				}
				fallback := ""
				if d.Options.AllowCPUFallback {
					fallback = ", CPU fallback allowed"
				}
				fmt.Fprintf(out, "Options:\tmax batch %s, max delay %s%s\n", batch, delay, fallback)
				fmt.Fprintf(out, "Guard:\t%s\n", guardSummary(d.Guard))
				fmt.Fprintf(out, "Created:\t%s\n", fmtTime(&d.CreatedAt))
				fmt.Fprintf(out, "Updated:\t%s\n", fmtTime(&d.UpdatedAt))
				fmt.Fprintln(out, "\nAGENT\tSTATE\tVERSION\tENDPOINT\tERROR")
				for _, t := range d.Targets {
					v := "-"
					if t.ModelVersion > 0 {
						v = fmt.Sprint(t.ModelVersion)
					}
					fmt.Fprintf(out, "%s\t%s\t%s\t%s\t%s\n", t.Agent, t.State, v, orDash(t.Endpoint), orDash(t.Error))
				}
			})
		}),
	}
}

func (a *app) deployDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a deployment (its agents stop serving it)",
		Args:  argsRange(1, 1, "NAME"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			if err := a.client().DeleteDeployment(cmd.Context(), ws, args[0]); err != nil {
				return err
			}
			if a.output == formatTable {
				fmt.Fprintf(a.stdout, "deleted deployment %s\n", args[0])
			}
			return nil
		}),
	}
}

// guardSummary renders a deployment's guard rules for show.
func guardSummary(g *hub.GuardRules) string {
	if g == nil || g.RollbackIf == "" {
		return "none"
	}
	probation := g.Probation
	if probation == "" {
		probation = hub.DefaultProbation.String()
	}
	minReq := "default"
	if g.MinRequests > 0 {
		minReq = fmt.Sprint(g.MinRequests)
	}
	return fmt.Sprintf("rollback if %s, probation %s, min requests %s", g.RollbackIf, probation, minReq)
}

// modelWithAlias renders "clf:3" or "clf:3 (@prod)".
func modelWithAlias(d *hub.Deployment) string {
	if d.Alias != "" {
		return d.ModelRef() + " (@" + d.Alias + ")"
	}
	return d.ModelRef()
}

// targeting renders the agent ids or the selector.
func targeting(d *hub.Deployment) string {
	if len(d.Agents) > 0 {
		return strings.Join(d.Agents, ",")
	}
	parts := make([]string, 0, len(d.Selector))
	for _, k := range sortedKeys(d.Selector) {
		parts = append(parts, k+"="+d.Selector[k])
	}
	return "selector " + orDash(strings.Join(parts, ","))
}

func targetsSummary(d *hub.Deployment) string {
	n := len(d.Targets)
	s := "s"
	if n == 1 {
		s = ""
	}
	return fmt.Sprintf("%s (%d agent%s now)", targeting(d), n, s)
}

func countState(d *hub.Deployment, state string) int {
	n := 0
	for _, t := range d.Targets {
		if t.State == state {
			n++
		}
	}
	return n
}
