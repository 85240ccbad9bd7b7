package cli

import "github.com/spf13/cobra"

func (a *app) deployMetricsCmd() *cobra.Command { return &cobra.Command{Use: "metrics", Hidden: true} }

func (a *app) agentMetricsCmd() *cobra.Command { return &cobra.Command{Use: "metrics", Hidden: true} }
