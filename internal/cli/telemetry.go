package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
)

func (a *app) deployMetricsCmd() *cobra.Command {
	var w client.MetricsWindow
	cmd := &cobra.Command{
		Use:   "metrics NAME",
		Short: "Show a deployment's requests per agent and in total: outcomes, rate, latency, batch size",
		Long: `Show what the agents serving a deployment measured since --since (a duration
before now such as 1h or 90m, or an RFC 3339 time): per agent and in total,
requests by outcome (ok, invalid, queue_full, unavailable, timeout, canceled,
error), errors (every outcome but ok), the request rate, latency percentiles
(p50/p95/p99, estimated from the agents' histograms, in milliseconds) and the
mean batch size (requests per inference run). --agent shows one agent only.

Agents report in batches (every few seconds by default) and keep them while
the hub is unreachable, so recent requests can appear late but never twice.
With -o json the answer is an object with "total" and "agents" (docs/monitoring.md).`,
		Args: argsRange(1, 1, "NAME"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			m, err := a.client().DeploymentMetrics(cmd.Context(), ws, args[0], w)
			if err != nil {
				return err
			}
			return a.emit(m, func(out io.Writer) { deploymentMetricsTable(out, m) })
		}),
	}
	cmd.Flags().StringVar(&w.Since, "since", "1h", "window start: a duration before now (90m) or an RFC 3339 time")
	cmd.Flags().StringVar(&w.Agent, "agent", "", "only this agent's requests")
	return cmd
}

func deploymentMetricsTable(out io.Writer, m *hub.DeploymentMetrics) {
	fmt.Fprintf(out, "Deployment:\t%s\n", m.Deployment)
	fmt.Fprintf(out, "Window:\t%s to %s\n", fmtTime(&m.Since), fmtTime(&m.Until))
	fmt.Fprintln(out, "\nAGENT\tREQUESTS\tERRORS\tOUTCOMES\tRATE/S\tP50 MS\tP95 MS\tP99 MS\tBATCH\tVERSIONS")
	for _, r := range m.Agents {
		requestRow(out, r.Agent, r)
	}
	requestRow(out, "TOTAL", m.Total)
}

// requestRow writes one row of request figures, first column label.
func requestRow(out io.Writer, label string, r hub.RequestMetrics) {
	fmt.Fprintf(out, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", label, r.Requests, r.Errors, outcomes(r.ByOutcome),
		fixed(r.RequestRate, 2), fixed(r.LatencyP50Ms, 2), fixed(r.LatencyP95Ms, 2), fixed(r.LatencyP99Ms, 2),
		fixed(r.BatchSizeMean, 1), versions(r.ModelVersions))
}

// outcomes is "error=6 ok=30", or "-".
func outcomes(m map[string]uint64) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		if m[k] > 0 {
			parts = append(parts, k+"="+strconv.FormatUint(m[k], 10))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func versions(vs []int) string {
	if len(vs) == 0 {
		return "-"
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func fixed(f float64, prec int) string { return strconv.FormatFloat(f, 'f', prec, 64) }

func (a *app) agentMetricsCmd() *cobra.Command {
	var w client.MetricsWindow
	cmd := &cobra.Command{
		Use:   "metrics ID",
		Short: "Show an agent's own figures and the requests it served per deployment",
		Long: `Show what an agent reported since --since (a duration before now such as 1h,
or an RFC 3339 time): its latest report, the number of telemetry batches, mean
process CPU (cores) and host CPU utilization, memory, disk, model cache and
spool figures from its newest batch, batches its spool dropped, and per
deployment the requests it served (as in "atelier deploy metrics").`,
		Args:              argsRange(1, 1, "ID"),
		ValidArgsFunction: a.completeAgents,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.client().AgentMetrics(cmd.Context(), args[0], w)
			if err != nil {
				return err
			}
			return a.emit(m, func(out io.Writer) { agentMetricsTable(out, m) })
		},
	}
	cmd.Flags().StringVar(&w.Since, "since", "1h", "window start: a duration before now (90m) or an RFC 3339 time")
	return cmd
}

func agentMetricsTable(out io.Writer, m *hub.AgentMetrics) {
	last := "-"
	if !m.LastReport.IsZero() {
		last = fmtTime(&m.LastReport)
	}
	fmt.Fprintf(out, "Agent:\t%s\n", m.Agent)
	fmt.Fprintf(out, "Window:\t%s to %s\n", fmtTime(&m.Since), fmtTime(&m.Until))
	fmt.Fprintf(out, "Last report:\t%s\n", last)
	fmt.Fprintf(out, "Batches:\t%d (spool pending %d, dropped %d)\n", m.Batches, m.SpoolPendingBatches, m.DroppedBatches)
	fmt.Fprintf(out, "CPU:\t%s cores (process), host %s%%\n", fixed(m.CPUCoresMean, 3), fixed(100*m.HostCPUUtilizationMean, 1))
	fmt.Fprintf(out, "Memory:\tRSS %s, host %s available of %s\n", fmtSize(int64(m.RSSBytes)), fmtSize(int64(m.HostMemoryAvailableBytes)), fmtSize(int64(m.HostMemoryTotalBytes)))
	fmt.Fprintf(out, "Disk:\t%s free of %s\n", fmtSize(int64(m.DiskFreeBytes)), fmtSize(int64(m.DiskTotalBytes)))
	fmt.Fprintf(out, "Model cache:\t%s\n", fmtSize(int64(m.ModelCacheBytes)))
	fmt.Fprintf(out, "Uptime:\t%ds\n", m.UptimeSeconds)
	fmt.Fprintln(out, "\nDEPLOYMENT\tREQUESTS\tERRORS\tOUTCOMES\tRATE/S\tP50 MS\tP95 MS\tP99 MS\tBATCH\tVERSIONS")
	for _, r := range m.Deployments {
		requestRow(out, r.Deployment, r)
	}
}
