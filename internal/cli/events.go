package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/atelier-ml/atelier/hub"
)

func (a *app) eventsCmd() *cobra.Command {
	var (
		follow        bool
		kinds         []string
		agent, deploy string
		since         string
		after         int64
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "List or follow the hub's event log",
		Long: `List the hub's events, oldest first: agents going online or offline,
deployments failing or rolled back on an agent, drift detected or resolved, and
what agents report (rollback, device_fault, device_recovered, cpu_fallback).

--since takes a duration before now (90m, 24h) or an RFC 3339 time; 0 lists every
event the hub still keeps. --kind may be repeated or comma-separated. With
--follow, keep printing new events as the hub records them until interrupted.

With -o json or yaml the list is one JSON array (or YAML list); with --follow,
-o json and -o yaml print one JSON object per line (NDJSON) as events arrive.`,
		Example: `  atelier events --since 1h
  atelier events --follow --kind agent_offline --kind deployment_failed
  atelier events --deployment churn -o json`,
		Args: argsRange(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := hub.EventQuery{After: after, Agent: agent, Deployment: deploy}
			known := hub.EventKinds()
			for _, k := range kinds {
				for k := range strings.SplitSeq(k, ",") {
					if k = strings.TrimSpace(k); k == "" {
						continue
					}
					if !slices.Contains(known, k) {
						return usageError("--kind %q: must be one of %s", k, strings.Join(known, ", "))
					}
					q.Kinds = append(q.Kinds, k)
				}
			}
			if after < 0 {
				return usageError("--after %d: must be an event id >= 0", after)
			}
			s, err := eventsSince(since, time.Now())
			if err != nil {
				return err
			}
			q.Since = s
			c := a.client()
			if !follow {
				var evs []hub.Event
				err := c.StreamEvents(cmd.Context(), q, false, func(e hub.Event) error {
					evs = append(evs, e)
					return nil
				})
				if err != nil {
					return err
				}
				if evs == nil {
					evs = []hub.Event{}
				}
				return a.emit(evs, func(w io.Writer) {
					fmt.Fprintln(w, "ID\tTIME\tKIND\tAGENT\tDEPLOYMENT\tMESSAGE")
					for _, e := range evs {
						fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", e.ID, fmtTime(&e.Time), e.Kind, orDash(e.Agent), orDash(e.Deployment), eventLine(e.Message))
					}
				})
			}
			enc := json.NewEncoder(a.stdout)
			return c.StreamEvents(cmd.Context(), q, true, func(e hub.Event) error {
				if a.output != formatTable {
					return enc.Encode(e)
				}
				_, err := fmt.Fprintf(a.stdout, "%d  %s  %s  agent=%s  deployment=%s  %s\n", e.ID, fmtTime(&e.Time), e.Kind, orDash(e.Agent), orDash(e.Deployment), eventLine(e.Message))
				return err
			})
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	fl.StringSliceVar(&kinds, "kind", nil, "only events of this kind (repeatable): "+strings.Join(hub.EventKinds(), ", "))
	fl.StringVar(&agent, "agent", "", "only events of this agent ID")
	fl.StringVar(&deploy, "deployment", "", "only events of this deployment")
	fl.StringVar(&since, "since", "24h", "only events since this duration ago or RFC 3339 time; 0 for all")
	fl.Int64Var(&after, "after", 0, "only events with an id above N")
	return cmd
}

// eventsSince reads --since: a duration before now, an RFC 3339 time, or 0
// (no bound: the zero time).
func eventsSince(s string, now time.Time) (time.Time, error) {
	if s == "" || s == "0" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, usageError("--since %q: want a duration such as 90m or 24h, an RFC 3339 time, or 0", s)
}

// eventLine keeps a message on one table row.
func eventLine(s string) string { return strings.Join(strings.Fields(s), " ") }
