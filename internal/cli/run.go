package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
)

func (a *app) runCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Submit, query and inspect training runs of a workspace (-w)",
	}
	cmd.AddCommand(
		a.runSubmitCmd(), a.runListCmd(), a.runShowCmd(), a.runLogsCmd(), a.runMetricsCmd(),
		a.runCompareCmd(), a.runArtifactsCmd(), a.runDownloadCmd(), a.runSnapshotCmd(),
		a.runTagCmd(), a.runCancelCmd(),
	)
	for _, sub := range cmd.Commands() {
		if strings.Contains(sub.Use, " RUN") {
			sub.ValidArgsFunction = a.completeRuns(strings.Contains(sub.Use, "RUN RUN..."))
		}
	}
	return cmd
}

// completeRuns completes run ids of the -w workspace (the 50 newest) for
// the first argument, or for every argument when all is set.
func (a *app) completeRuns(all bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if a.workspace == "" || (len(args) > 0 && !all) {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		runs, err := a.client().ListRuns(ctx, a.workspace, client.RunQuery{Top: 50})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ids := make([]string, 0, len(runs))
		for _, r := range runs {
			ids = append(ids, fmt.Sprintf("%s\t%s %s", r.ID, r.Experiment, r.Status))
		}
		return ids, cobra.ShellCompDirectiveNoFileComp
	}
}

// withWorkspace wraps a run subcommand body that needs -w.
func (a *app) withWorkspace(fn func(cmd *cobra.Command, ws string, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ws, err := a.needWorkspace()
		if err != nil {
			return err
		}
		return fn(cmd, ws, args)
	}
}

func (a *app) runListCmd() *cobra.Command {
	var q client.RunQuery
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List runs, filtered and ordered",
		Long: `List the runs of a workspace, newest first unless --order-by says otherwise.

--filter takes conditions joined with "and", each FIELD OP VALUE where FIELD is
metrics.NAME, params.NAME, tags.NAME or status and OP one of = != < <= > >=;
strings are quoted: metrics.acc > 0.9 and params.optimizer = 'adam'.
--order-by takes metrics.NAME, params.NAME, tags.NAME or created_at, with an
optional :asc or :desc.`,
		Example: `  atelier run list -w vision -e resnet --filter "metrics.acc > 0.9" --order-by metrics.acc:desc --top 5`,
		Args:    argsRange(0, 0, "no arguments"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, _ []string) error {
			if q.Top < 0 {
				return usageError("--top %d: must be 0 (no limit) or more", q.Top)
			}
			runs, err := a.client().ListRuns(cmd.Context(), ws, q)
			if err != nil {
				return err
			}
			if runs == nil {
				runs = []hub.Run{}
			}
			metric := orderMetric(q.OrderBy)
			now := time.Now()
			return a.emit(runs, func(out io.Writer) {
				head := "ID\tEXPERIMENT\tSTATUS\tSTARTED\tDURATION"
				if metric != "" {
					head += "\t" + strings.ToUpper(metric)
				}
				fmt.Fprintln(out, head)
				for _, r := range runs {
					fmt.Fprintf(out, "%s\t%s\t%s\t%s\t%s", r.ID, r.Experiment, r.Status, fmtTime(r.StartedAt), fmtDuration(r.StartedAt, r.EndedAt, now))
					if metric != "" {
						v, ok := r.Metrics[metric]
						cell := "-"
						if ok {
							cell = fmtFloat(v)
						}
						fmt.Fprintf(out, "\t%s", cell)
					}
					fmt.Fprintln(out)
				}
			})
		}),
	}
	f := cmd.Flags()
	f.StringVarP(&q.Experiment, "experiment", "e", "", "only runs of this experiment")
	f.StringVar(&q.Filter, "filter", "", "filter expression, e.g. \"metrics.acc > 0.9 and params.lr = '0.1'\"")
	f.StringVar(&q.OrderBy, "order-by", "", "order by metrics.NAME, params.NAME, tags.NAME or created_at, with :asc or :desc")
	f.IntVar(&q.Top, "top", 0, "show at most N runs (0: all)")
	_ = cmd.RegisterFlagCompletionFunc("experiment", a.completeExperiments)
	return cmd
}

// orderMetric returns NAME of an --order-by metrics.NAME[:dir], or "".
func orderMetric(orderBy string) string {
	name, ok := strings.CutPrefix(strings.TrimSpace(orderBy), "metrics.")
	if !ok {
		return ""
	}
	if i := strings.LastIndex(name, ":"); i >= 0 {
		switch strings.ToLower(name[i+1:]) {
		case "asc", "desc":
			name = name[:i]
		}
	}
	return name
}

func (a *app) runShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show RUN",
		Short: "Show a run: status, params, tags, latest metrics, artifacts",
		Args:  argsRange(1, 1, "RUN"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			r, err := a.client().GetRun(cmd.Context(), ws, args[0])
			if err != nil {
				return err
			}
			return a.emit(r, func(out io.Writer) { printRun(out, r, time.Now()) })
		}),
	}
}

func printRun(out io.Writer, r *hub.Run, now time.Time) {
	status := string(r.Status)
	if r.ExitCode != nil {
		status += fmt.Sprintf(" (exit code %d)", *r.ExitCode)
	}
	fmt.Fprintf(out, "ID:\t%s\n", r.ID)
	fmt.Fprintf(out, "Workspace:\t%s\n", r.Workspace)
	fmt.Fprintf(out, "Experiment:\t%s\n", r.Experiment)
	if r.Name != "" {
		fmt.Fprintf(out, "Name:\t%s\n", r.Name)
	}
	if r.ParentID != "" {
		fmt.Fprintf(out, "Parent:\t%s\n", r.ParentID)
	}
	fmt.Fprintf(out, "Status:\t%s\n", status)
	if r.Error != "" {
		fmt.Fprintf(out, "Error:\t%s\n", r.Error)
	}
	if len(r.Command) > 0 {
		fmt.Fprintf(out, "Command:\t%s\n", strings.Join(r.Command, " "))
	}
	fmt.Fprintf(out, "Created:\t%s\n", fmtTime(&r.CreatedAt))
	fmt.Fprintf(out, "Started:\t%s\n", fmtTime(r.StartedAt))
	fmt.Fprintf(out, "Ended:\t%s\n", fmtTime(r.EndedAt))
	fmt.Fprintf(out, "Duration:\t%s\n", fmtDuration(r.StartedAt, r.EndedAt, now))
	section := func(title string, m map[string]string) {
		fmt.Fprintf(out, "%s:\t%s\n", title, map[bool]string{true: "-", false: ""}[len(m) == 0])
		for _, k := range sortedKeys(m) {
			fmt.Fprintf(out, "  %s\t%s\n", k, m[k])
		}
	}
	section("Params", r.Params)
	section("Tags", r.Tags)
	metrics := make(map[string]string, len(r.Metrics))
	for k, v := range r.Metrics {
		metrics[k] = fmtFloat(v)
	}
	section("Metrics", metrics)
	arts := make(map[string]string, len(r.Artifacts))
	for _, art := range r.Artifacts {
		arts[art.Path] = fmtSize(art.Size)
	}
	section("Artifacts", arts)
	if r.Snapshot != nil {
		fmt.Fprintf(out, "Snapshot:\tsha256:%s (%s)\n", r.Snapshot.SHA256, fmtSize(r.Snapshot.Size))
	}
}

func (a *app) runLogsCmd() *cobra.Command {
	var (
		follow     bool
		after      int64
		timestamps bool
	)
	cmd := &cobra.Command{
		Use:   "logs RUN",
		Short: "Print the log of a run (stdout lines on stdout, stderr lines on stderr)",
		Long: `Print the log of a run: what it printed on stdout goes to stdout, what it
printed on stderr to stderr. With --follow, keep printing new lines until the run
ends. With -o json or yaml, print every line as one JSON object (NDJSON) on stdout.`,
		Args: argsRange(1, 1, "RUN"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			enc := json.NewEncoder(a.stdout)
			return a.client().StreamLogs(cmd.Context(), ws, args[0], after, follow, func(l hub.LogLine) error {
				if a.output != formatTable {
					return enc.Encode(l)
				}
				w := a.stdout
				if l.Stream == hub.Stderr {
					w = a.stderr
				}
				if timestamps {
					_, err := fmt.Fprintf(w, "%s %s\n", l.Time.UTC().Format(time.RFC3339Nano), l.Text)
					return err
				}
				_, err := fmt.Fprintln(w, l.Text)
				return err
			})
		}),
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until the run ends")
	cmd.Flags().Int64Var(&after, "after", 0, "only lines with a sequence number above N")
	cmd.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "prefix each line with its time")
	return cmd
}

func (a *app) runMetricsCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "metrics RUN",
		Short: "Print the metric series of a run",
		Args:  argsRange(1, 1, "RUN"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			pts, err := a.client().GetMetrics(cmd.Context(), ws, args[0], name)
			if err != nil {
				return err
			}
			if pts == nil {
				pts = []hub.MetricPoint{}
			}
			return a.emit(pts, func(out io.Writer) {
				fmt.Fprintln(out, "NAME\tSTEP\tVALUE\tTIME")
				for _, p := range pts {
					fmt.Fprintf(out, "%s\t%d\t%s\t%s\n", p.Name, p.Step, fmtFloat(p.Value), p.Time.UTC().Format(time.RFC3339Nano))
				}
			})
		}),
	}
	cmd.Flags().StringVar(&name, "name", "", "only this metric")
	return cmd
}

// compareRow is one row of `run compare`: a field and its value in each
// run ("" where a run lacks it).
type compareRow struct {
	Field  string   `json:"field"`
	Values []string `json:"values"`
	Differ bool     `json:"differ"`
}

func (a *app) runCompareCmd() *cobra.Command {
	var onlyDiff bool
	cmd := &cobra.Command{
		Use:   "compare RUN RUN...",
		Short: "Compare runs: params and latest metrics side by side, differing rows marked",
		Long: `Compare runs side by side: one column per run, one row per status, param and
latest metric value. Rows whose values differ are marked with "*".`,
		Args: argsRange(2, -1, "at least two RUNs"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			c := a.client()
			runs := make([]*hub.Run, len(args))
			for i, id := range args {
				r, err := c.GetRun(cmd.Context(), ws, id)
				if err != nil {
					return err
				}
				runs[i] = r
			}
			rows := compareRows(runs)
			if onlyDiff {
				kept := rows[:0]
				for _, r := range rows {
					if r.Differ {
						kept = append(kept, r)
					}
				}
				rows = kept
			}
			out := struct {
				Runs []string     `json:"runs"`
				Rows []compareRow `json:"rows"`
			}{Runs: args, Rows: rows}
			return a.emit(out, func(w io.Writer) {
				fmt.Fprint(w, " \tFIELD")
				for _, id := range args {
					fmt.Fprintf(w, "\t%s", id)
				}
				fmt.Fprintln(w)
				for _, r := range rows {
					mark := " "
					if r.Differ {
						mark = "*"
					}
					fmt.Fprintf(w, "%s\t%s", mark, r.Field)
					for _, v := range r.Values {
						fmt.Fprintf(w, "\t%s", orDash(v))
					}
					fmt.Fprintln(w)
				}
			})
		}),
	}
	cmd.Flags().BoolVar(&onlyDiff, "diff", false, "show only the rows that differ")
	return cmd
}

// compareRows lays out the status, params and metrics of runs.
func compareRows(runs []*hub.Run) []compareRow {
	var rows []compareRow
	add := func(field string, value func(*hub.Run) (string, bool)) {
		row := compareRow{Field: field, Values: make([]string, len(runs))}
		for i, r := range runs {
			v, _ := value(r)
			row.Values[i] = v
			if i > 0 && v != row.Values[0] {
				row.Differ = true
			}
		}
		rows = append(rows, row)
	}
	add("status", func(r *hub.Run) (string, bool) { return string(r.Status), true })
	params, metrics := map[string]bool{}, map[string]bool{}
	for _, r := range runs {
		for k := range r.Params {
			params[k] = true
		}
		for k := range r.Metrics {
			metrics[k] = true
		}
	}
	for _, k := range sortedKeys(params) {
		add("params."+k, func(r *hub.Run) (string, bool) { v, ok := r.Params[k]; return v, ok })
	}
	for _, k := range sortedKeys(metrics) {
		add("metrics."+k, func(r *hub.Run) (string, bool) {
			v, ok := r.Metrics[k]
			if !ok {
				return "", false
			}
			return fmtFloat(v), true
		})
	}
	return rows
}

func (a *app) runArtifactsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "artifacts RUN",
		Short: "List the output artifacts of a run",
		Args:  argsRange(1, 1, "RUN"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			arts, err := a.client().ListArtifacts(cmd.Context(), ws, args[0])
			if err != nil {
				return err
			}
			if arts == nil {
				arts = []hub.Artifact{}
			}
			return a.emit(arts, func(out io.Writer) {
				fmt.Fprintln(out, "PATH\tSIZE\tSHA256")
				for _, x := range arts {
					fmt.Fprintf(out, "%s\t%d\t%s\n", x.Path, x.Size, x.SHA256)
				}
			})
		}),
	}
}

func (a *app) runTagCmd() *cobra.Command {
	var remove []string
	cmd := &cobra.Command{
		Use:   "tag RUN KEY=VALUE...",
		Short: "Set (or with --delete remove) tags of a run",
		Args:  argsRange(1, -1, "RUN and KEY=VALUE pairs"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			tags, err := parseKV("tag", args[1:])
			if err != nil {
				return err
			}
			if len(tags) == 0 && len(remove) == 0 {
				return usageError("%s: give KEY=VALUE pairs to set or --delete KEY", cmd.CommandPath())
			}
			c := a.client()
			if len(tags) > 0 {
				if err := c.SetTags(cmd.Context(), ws, args[0], tags); err != nil {
					return err
				}
			}
			for _, k := range remove {
				if err := c.DeleteTag(cmd.Context(), ws, args[0], k); err != nil {
					return err
				}
			}
			r, err := c.GetRun(cmd.Context(), ws, args[0])
			if err != nil {
				return err
			}
			return a.emit(r.Tags, func(out io.Writer) {
				for _, k := range sortedKeys(r.Tags) {
					fmt.Fprintf(out, "%s\t%s\n", k, r.Tags[k])
				}
			})
		}),
	}
	cmd.Flags().StringSliceVar(&remove, "delete", nil, "remove the tag KEY (repeatable)")
	return cmd
}

func (a *app) runCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel RUN",
		Short: "Mark a queued or running run as canceled",
		Args:  argsRange(1, 1, "RUN"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			r, err := a.client().UpdateRun(cmd.Context(), ws, args[0], hub.RunUpdate{Status: hub.StatusCanceled})
			if err != nil {
				return err
			}
			return a.emit(r, func(out io.Writer) { fmt.Fprintf(out, "run %s is %s\n", r.ID, r.Status) })
		}),
	}
}
