package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
)

// completionTimeout bounds the hub calls of dynamic shell completion.
const completionTimeout = 2 * time.Second

// DefaultHub is the hub URL used when neither --hub nor ATELIER_HUB is set.
const DefaultHub = "http://127.0.0.1:8780"

// Output formats of -o/--output.
const (
	formatTable = "table"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// app holds what every command shares: the streams, the environment and
// the global flags. It lives for one execution of the command tree.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	log            *slog.Logger

	hubURL    string
	workspace string
	output    string
}

// New returns the root command of atelier. getenv supplies the environment
// (os.Getenv in the binary; tests pass their own); defaults of the global
// flags come from it. Commands write results to stdout and diagnostics to
// stderr; log receives debug records of the CLI itself (`hub serve` builds
// its own logger from its flags).
//
// The returned command reports errors without printing them: Main prints
// them and maps them to exit codes. Callers that execute the command
// directly should do the same with ExitCode and ErrorLine.
func New(stdout, stderr io.Writer, getenv func(string) string, log *slog.Logger) *cobra.Command {
	return newApp(stdout, stderr, getenv, log).root()
}

func newApp(stdout, stderr io.Writer, getenv func(string) string, log *slog.Logger) *app {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &app{stdout: stdout, stderr: stderr, getenv: getenv, log: log}
}

// Main runs atelier with args (without the program name) and returns the
// exit code, having printed any error as one line on stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, log *slog.Logger) int {
	a := newApp(stdout, stderr, getenv, log)
	root := a.root()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	code := ExitCode(err)
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return 130
	}
	if line := a.errorLine(err); line != "" {
		fmt.Fprintln(stderr, line)
		if code == 2 {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", commandPath(root, args))
		}
	}
	return code
}

// commandPath returns the path of the command args select, for the usage
// hint.
func commandPath(root *cobra.Command, args []string) string {
	c, _, err := root.Find(args)
	if err != nil || c == nil {
		return root.Name()
	}
	return c.CommandPath()
}

// ExitCode maps an error returned by the command tree to an exit code.
func ExitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, errUsage), isCobraUsage(err):
		return 2
	}
	return 1
}

// errorLine renders err as the one line printed on stderr, or "" if there
// is nothing to print.
func (a *app) errorLine(err error) string {
	var ee *exitError
	if err == nil || (errors.As(err, &ee) && ee.Err == nil) {
		return ""
	}
	return "atelier: " + oneLine(a.describe(err))
}

// oneLine folds a multi-line message (as YAML decoding errors are) into one
// line.
func oneLine(msg string) string {
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	var b strings.Builder
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if i > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(l)
	}
	return b.String()
}

// describe turns transport errors into advice; hub errors are already the
// hub's own readable message.
func (a *app) describe(err error) string {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return err.Error()
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Sprintf("hub is not reachable at %s (connection refused); start one with `atelier hub serve` or point --hub (or ATELIER_HUB) at a running hub", a.hubURL)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Sprintf("hub is not reachable at %s: cannot resolve host %q", a.hubURL, dnsErr.Name)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return fmt.Sprintf("hub is not reachable at %s: %v", a.hubURL, opErr.Err)
	}
	return err.Error()
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "atelier",
		Short: "Atelier: a self-hosted ML workspace",
		Long: `atelier manages an Atelier hub: workspaces, experiments and the history of
training runs (params, metrics, logs, artifacts, script snapshots).

It talks to the hub at --hub (or $ATELIER_HUB); "atelier hub serve" runs one.`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		DisableAutoGenTag: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			switch a.output {
			case formatTable, formatJSON, formatYAML:
			default:
				return usageError("-o/--output %q: must be one of table, json, yaml", a.output)
			}
			u, err := normalizeHubURL(a.hubURL)
			if err != nil {
				return err
			}
			a.hubURL = u
			return nil
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return usageError("%v", err)
	})
	hubDefault := a.getenv("ATELIER_HUB")
	if hubDefault == "" {
		hubDefault = DefaultHub
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.hubURL, "hub", hubDefault, "URL of the hub (env ATELIER_HUB)")
	pf.StringVarP(&a.workspace, "workspace", "w", a.getenv("ATELIER_WORKSPACE"), "workspace to work in (env ATELIER_WORKSPACE)")
	pf.StringVarP(&a.output, "output", "o", formatTable, "output format: table, json or yaml")
	_ = root.RegisterFlagCompletionFunc("workspace", a.completeWorkspaces)
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{formatTable, formatJSON, formatYAML}, cobra.ShellCompDirectiveNoFileComp))

	root.AddCommand(a.hubCmd(), a.workspaceCmd(), a.experimentCmd(), a.runCmd(), a.modelCmd(), a.agentCmd(), a.deployCmd(), a.eventsCmd(), a.datasetCmd())
	return root
}

// normalizeHubURL accepts "host:port" as "http://host:port" and checks the
// URL is http(s) with a host.
func normalizeHubURL(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", usageError("--hub %q: want a URL like http://127.0.0.1:8780", raw)
	}
	return strings.TrimRight(s, "/"), nil
}

// client returns a client of the hub at --hub.
func (a *app) client() *client.Client {
	return client.New(a.hubURL, client.WithUserAgent("atelier-cli"))
}

// needWorkspace returns the workspace of -w or $ATELIER_WORKSPACE.
func (a *app) needWorkspace() (string, error) {
	if a.workspace == "" {
		return "", usageError("no workspace: give -w/--workspace or set ATELIER_WORKSPACE")
	}
	return a.workspace, nil
}

// argsRange returns a cobra.PositionalArgs that wants between min and max
// arguments (max < 0: no limit), named in names for the error message.
func argsRange(min, max int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min {
			return usageError("%s: missing %s", cmd.CommandPath(), names)
		}
		if max >= 0 && len(args) > max {
			return usageError("%s: too many arguments (want %s, got %q)", cmd.CommandPath(), names, strings.Join(args, " "))
		}
		return nil
	}
}

// parseKV parses k=v arguments of what ("param", "tag") into a map.
func parseKV(what string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, usageError("%s %q: want KEY=VALUE", what, kv)
		}
		if err := hub.CheckKey(what, k); err != nil {
			return nil, usageError("%v", err)
		}
		m[k] = v
	}
	return m, nil
}

// completeWorkspaces completes workspace names from the hub, quietly giving
// nothing when it is not reachable.
func (a *app) completeWorkspaces(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	ws, err := a.client().ListWorkspaces(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names := make([]string, 0, len(ws))
	for _, w := range ws {
		names = append(names, w.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeExperiments completes experiment names of the -w workspace.
func (a *app) completeExperiments(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	if a.workspace == "" {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	es, err := a.client().ListExperiments(ctx, a.workspace)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// isTerminal reports whether w is a terminal (for progress output).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
