package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/atelier-ml/atelier/hub"
)

func (a *app) workspaceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "workspace",
		Aliases: []string{"ws"},
		Short:   "Create, list, show and delete workspaces",
	}
	var description string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a workspace",
		Long:  "Create a workspace. Names are " + hub.NameRule + ".",
		Args:  argsRange(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := a.client().CreateWorkspace(cmd.Context(), args[0], description)
			if err != nil {
				return err
			}
			return a.emit(w, func(out io.Writer) { fmt.Fprintf(out, "created workspace %s\n", w.Name) })
		},
	}
	create.Flags().StringVarP(&description, "description", "d", "", "what the workspace is for")

	list := &cobra.Command{
		Use:   "list",
		Short: "List workspaces",
		Args:  argsRange(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ws, err := a.client().ListWorkspaces(cmd.Context())
			if err != nil {
				return err
			}
			if ws == nil {
				ws = []hub.Workspace{}
			}
			return a.emit(ws, func(out io.Writer) {
				fmt.Fprintln(out, "NAME\tEXPERIMENTS\tRUNS\tCREATED\tDESCRIPTION")
				for _, w := range ws {
					fmt.Fprintf(out, "%s\t%d\t%d\t%s\t%s\n", w.Name, w.Experiments, w.Runs, fmtTime(&w.CreatedAt), w.Description)
				}
			})
		},
	}

	show := &cobra.Command{
		Use:               "show NAME",
		Short:             "Show a workspace",
		Args:              argsRange(1, 1, "NAME"),
		ValidArgsFunction: a.completeWorkspaces,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := a.client().GetWorkspace(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.emit(w, func(out io.Writer) {
				fmt.Fprintf(out, "Name:\t%s\n", w.Name)
				fmt.Fprintf(out, "Description:\t%s\n", orDash(w.Description))
				fmt.Fprintf(out, "Created:\t%s\n", fmtTime(&w.CreatedAt))
				fmt.Fprintf(out, "Experiments:\t%d\n", w.Experiments)
				fmt.Fprintf(out, "Runs:\t%d\n", w.Runs)
			})
		},
	}

	var force bool
	del := &cobra.Command{
		Use:               "delete NAME",
		Short:             "Delete a workspace",
		Long:              "Delete a workspace. One that holds experiments or runs is refused unless --force is given, which deletes everything in it.",
		Args:              argsRange(1, 1, "NAME"),
		ValidArgsFunction: a.completeWorkspaces,
		RunE: func(cmd *cobra.Command, args []string) error {
			err := a.client().DeleteWorkspace(cmd.Context(), args[0], force)
			if errors.Is(err, hub.ErrConflict) && !force {
				return fmt.Errorf("%w (use --force to delete it with everything in it)", err)
			}
			if err != nil {
				return err
			}
			if a.output != formatTable {
				return a.emit(map[string]any{"deleted": args[0]}, nil)
			}
			fmt.Fprintf(a.stdout, "deleted workspace %s\n", args[0])
			return nil
		},
	}
	del.Flags().BoolVar(&force, "force", false, "delete the workspace even if it holds experiments or runs, with all of them")

	cmd.AddCommand(create, list, show, del)
	return cmd
}

func (a *app) experimentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "experiment",
		Aliases: []string{"exp"},
		Short:   "Create, list and show the experiments of a workspace (-w)",
	}
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create an experiment (runs also create theirs on first use)",
		Args:  argsRange(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ws, err := a.needWorkspace()
			if err != nil {
				return err
			}
			e, err := a.client().CreateExperiment(cmd.Context(), ws, args[0])
			if err != nil {
				return err
			}
			return a.emit(e, func(out io.Writer) { fmt.Fprintf(out, "created experiment %s in workspace %s\n", e.Name, e.Workspace) })
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the experiments of a workspace",
		Args:  argsRange(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ws, err := a.needWorkspace()
			if err != nil {
				return err
			}
			es, err := a.client().ListExperiments(cmd.Context(), ws)
			if err != nil {
				return err
			}
			if es == nil {
				es = []hub.Experiment{}
			}
			return a.emit(es, func(out io.Writer) {
				fmt.Fprintln(out, "NAME\tRUNS\tCREATED")
				for _, e := range es {
					fmt.Fprintf(out, "%s\t%d\t%s\n", e.Name, e.Runs, fmtTime(&e.CreatedAt))
				}
			})
		},
	}
	show := &cobra.Command{
		Use:               "show NAME",
		Short:             "Show an experiment",
		Args:              argsRange(1, 1, "NAME"),
		ValidArgsFunction: a.completeExperiments,
		RunE: func(cmd *cobra.Command, args []string) error {
			ws, err := a.needWorkspace()
			if err != nil {
				return err
			}
			e, err := a.client().GetExperiment(cmd.Context(), ws, args[0])
			if err != nil {
				return err
			}
			return a.emit(e, func(out io.Writer) {
				fmt.Fprintf(out, "Name:\t%s\n", e.Name)
				fmt.Fprintf(out, "Workspace:\t%s\n", e.Workspace)
				fmt.Fprintf(out, "Created:\t%s\n", fmtTime(&e.CreatedAt))
				fmt.Fprintf(out, "Runs:\t%d\n", e.Runs)
			})
		},
	}
	cmd.AddCommand(create, list, show)
	return cmd
}
