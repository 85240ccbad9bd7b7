package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/atelier-ml/atelier/hub"
)

func (a *app) agentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Create join tokens; list, show and revoke agents (hub-wide)",
		Long: `Agents are the devices and hosts that serve models. They belong to the hub, not
to a workspace (deployments made in a workspace target them by id or label).

An agent enrolls once with a one-time join token ('atelier agent token create'):
it receives its id and a broker secret, and connects to the hub's MQTT broker
with them. A token expires (default 1h, at most 7 days) and works once. The
agent's labels are the token's labels overlaid with those it asks for (its own
win on a shared key).

Revoking an agent refuses its credential from then on and closes its open
connections at once.`,
	}
	token := &cobra.Command{Use: "token", Short: "Create join tokens for enrolling agents"}
	token.AddCommand(a.agentTokenCreateCmd())
	cmd.AddCommand(token, a.agentListCmd(), a.agentShowCmd(), a.agentRevokeCmd(), a.agentMetricsCmd())
	return cmd
}

func (a *app) agentTokenCreateCmd() *cobra.Command {
	var (
		labels []string
		ttl    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create [--label K=V ...] [--ttl DURATION]",
		Short: "Create a one-time join token",
		Long: `Create a one-time join token. Give it to one agent ('atelier-agent run --hub URL
--token TOKEN'); it is shown only now (the hub keeps its hash). --ttl is how
long it can be used (default 1h, at most 168h); --label K=V labels the agent
that enrolls with it.`,
		Args: argsRange(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			lm, err := parseKV("label", labels)
			if err != nil {
				return err
			}
			if ttl <= 0 || ttl > hub.MaxJoinTokenTTL {
				return usageError("--ttl %s: must be above 0 and at most %s", ttl, hub.MaxJoinTokenTTL)
			}
			t, err := a.client().CreateJoinToken(cmd.Context(), lm, ttl.String())
			if err != nil {
				return err
			}
			return a.emit(t, func(out io.Writer) {
				fmt.Fprintf(out, "Token:\t%s\n", t.Token)
				fmt.Fprintf(out, "Expires:\t%s\n", fmtTime(&t.ExpiresAt))
				fmt.Fprintf(out, "Labels:\t%s\n", orDash(fmtLabels(t.Labels)))
			})
		},
	}
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "label K=V of the enrolling agent (repeatable)")
	cmd.Flags().DurationVar(&ttl, "ttl", hub.DefaultJoinTokenTTL, "how long the token can be used (at most 168h)")
	return cmd
}

// fmtLabels renders labels as k=v,k=v sorted by key.
func fmtLabels(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + m[k])
	}
	return b.String()
}

// completeAgents completes agent ids (first argument only).
func (a *app) completeAgents(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	as, err := a.client().ListAgents(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ids := make([]string, 0, len(as))
	for _, ag := range as {
		ids = append(ids, ag.ID)
	}
	return ids, cobra.ShellCompDirectiveNoFileComp
}

func (a *app) agentListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List agents, revoked ones included",
		Args:  argsRange(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			as, err := a.client().ListAgents(cmd.Context())
			if err != nil {
				return err
			}
			if as == nil {
				as = []hub.Agent{}
			}
			return a.emit(as, func(out io.Writer) {
				fmt.Fprintln(out, "ID\tNAME\tKIND\tSTATE\tLAST SEEN\tLABELS")
				for _, ag := range as {
					fmt.Fprintf(out, "%s\t%s\t%s\t%s\t%s\t%s\n", ag.ID, ag.Name, ag.Kind, ag.State, fmtTime(ag.LastSeen), orDash(fmtLabels(ag.Labels)))
				}
			})
		},
	}
}

func (a *app) showAgent(ag *hub.Agent) error {
	return a.emit(ag, func(out io.Writer) {
		c := ag.Capabilities
		fmt.Fprintf(out, "ID:\t%s\n", ag.ID)
		fmt.Fprintf(out, "Name:\t%s\n", ag.Name)
		fmt.Fprintf(out, "Kind:\t%s\n", ag.Kind)
		fmt.Fprintf(out, "State:\t%s\n", ag.State)
		fmt.Fprintf(out, "Labels:\t%s\n", orDash(fmtLabels(ag.Labels)))
		fmt.Fprintf(out, "Enrolled:\t%s\n", fmtTime(&ag.EnrolledAt))
		fmt.Fprintf(out, "Last seen:\t%s\n", fmtTime(ag.LastSeen))
		if ag.RevokedAt != nil {
			fmt.Fprintf(out, "Revoked:\t%s\n", fmtTime(ag.RevokedAt))
		}
		fmt.Fprintf(out, "Platform:\t%s/%s, %d CPUs, %d bytes of memory\n", orDash(c.OS), orDash(c.Arch), c.CPUs, c.MemoryBytes)
		fmt.Fprintf(out, "Agent version:\t%s\n", orDash(c.AgentVersion))
		fmt.Fprintf(out, "ONNX Runtime:\t%s\n", orDash(c.ONNXRuntimeVersion))
		fmt.Fprintf(out, "Endpoint:\t%s\n", orDash(ag.Endpoint))
	})
}

func (a *app) agentShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "show ID",
		Short:             "Show an agent: state, labels, capabilities, last seen",
		Args:              argsRange(1, 1, "ID"),
		ValidArgsFunction: a.completeAgents,
		RunE: func(cmd *cobra.Command, args []string) error {
			ag, err := a.client().GetAgent(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.showAgent(ag)
		},
	}
}

func (a *app) agentRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an agent: refuse its credential and disconnect it now",
		Long: `Revoke an agent. The broker refuses its credential from now on and its open
connections are closed at once. It cannot be undone: enroll the device again
with a new join token. Revoking a revoked agent changes nothing.`,
		Args:              argsRange(1, 1, "ID"),
		ValidArgsFunction: a.completeAgents,
		RunE: func(cmd *cobra.Command, args []string) error {
			ag, err := a.client().RevokeAgent(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.output == formatTable {
				fmt.Fprintf(a.stdout, "revoked agent %s (%s)\n", ag.ID, ag.Name)
				return nil
			}
			return a.emit(ag, nil)
		},
	}
}
