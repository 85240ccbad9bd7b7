package cli

import "github.com/spf13/cobra"

func (a *app) eventsCmd() *cobra.Command { return &cobra.Command{Use: "events", Hidden: true} }
