package cli

import "github.com/spf13/cobra"

func (a *app) deployDriftCmd() *cobra.Command { return &cobra.Command{Use: "drift", Hidden: true} }
