package cli

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
)

func (a *app) modelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Register, list, show, download, alias, tag and delete model versions of a workspace (-w)",
		Long: `The model registry of a workspace. Each registration of a name adds the next
version (1, 2, ...; numbers are never reused). A version is an ONNX file the hub
has read: its IR version, opset, producer and its inputs and outputs with their
element types and shapes.

A model reference is NAME (the latest version), NAME:VERSION, NAME:latest or
NAME@ALIAS. Aliases (such as production) point at one version of a model and
can be moved.`,
	}
	cmd.AddCommand(a.modelRegisterCmd(), a.modelListCmd(), a.modelVersionsCmd(), a.modelShowCmd(),
		a.modelDownloadCmd(), a.modelAliasCmd(), a.modelTagCmd(), a.modelDeleteCmd())
	for _, sub := range cmd.Commands() {
		if strings.Contains(sub.Use, " NAME") {
			sub.ValidArgsFunction = a.completeModels
		}
	}
	return cmd
}

// completeModels completes model names of the -w workspace (first
// argument only).
func (a *app) completeModels(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if a.workspace == "" || len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	ms, err := a.client().ListModels(ctx, a.workspace)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names := make([]string, 0, len(ms))
	for _, m := range ms {
		names = append(names, m.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// parseRef parses a model reference argument; a malformed one is a usage
// error.
func parseRef(s string) (string, hub.VersionRef, error) {
	name, ref, err := hub.ParseModelRef(s)
	if err != nil {
		return "", hub.VersionRef{}, usageError("%v", strings.TrimSuffix(err.Error(), ": "+hub.ErrInvalid.Error()))
	}
	return name, ref, nil
}

// parseVersioned parses NAME:VERSION with a number, as deletes and tags
// need.
func parseVersioned(s string) (string, int, error) {
	name, ref, err := parseRef(s)
	if err != nil {
		return "", 0, err
	}
	if ref.Version == 0 {
		return "", 0, usageError("%q: want NAME:VERSION with a version number", s)
	}
	return name, ref.Version, nil
}

func (a *app) modelRegisterCmd() *cobra.Command {
	var (
		file, run, path, description string
		tags                         []string
	)
	cmd := &cobra.Command{
		Use:   "register NAME (--file PATH | --run RUN --path ARTIFACT)",
		Short: "Register the next version of a model from an ONNX file or a run's artifact",
		Long: `Register the next version of model NAME, from a local ONNX file (--file) or
from an artifact of a run (--run and --path). A version registered from a run
shares the artifact's stored content (nothing is uploaded again) and records the
run and its experiment.

The hub reads the file before storing anything: a file that is not a valid ONNX
model, or that keeps tensor data in external files, is refused with what is
wrong and at which byte offset, and the registry is left unchanged.`,
		Args: argsRange(1, 1, "NAME"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			name := args[0]
			if err := hub.CheckName("model", name); err != nil {
				return usageError("%s", strings.TrimSuffix(err.Error(), ": "+hub.ErrInvalid.Error()))
			}
			tagMap, err := parseKV("tag", tags)
			if err != nil {
				return err
			}
			opts := client.RegisterOptions{Description: description, Tags: tagMap}
			var mv *hub.ModelVersion
			switch {
			case file != "" && (run != "" || path != ""):
				return usageError("give either --file or --run with --path, not both")
			case file != "":
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("register %s: %w", name, err)
				}
				defer f.Close()
				fi, err := f.Stat()
				if err != nil {
					return fmt.Errorf("register %s: %w", name, err)
				}
				if fi.IsDir() {
					return fmt.Errorf("register %s: %s is a directory, not an ONNX file", name, file)
				}
				mv, err = a.client().RegisterModel(cmd.Context(), ws, name, f, fi.Size(), opts)
				if err != nil {
					return err
				}
			case run != "" && path != "":
				mv, err = a.client().RegisterModelFromRun(cmd.Context(), ws, name, run, path, opts)
				if err != nil {
					return err
				}
			default:
				return usageError("give the model with --file PATH, or --run RUN with --path ARTIFACT")
			}
			return a.emit(mv, func(out io.Writer) {
				fmt.Fprintf(out, "registered %s (%s, sha256 %s)\n", mv.Ref(), fmtSize(mv.Size), mv.SHA256[:12])
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "", "the ONNX file to register")
	f.StringVar(&run, "run", "", "register an artifact of this run (with --path)")
	f.StringVar(&path, "path", "", "path of the run's artifact (with --run)")
	f.StringVarP(&description, "description", "d", "", "what this version is")
	f.StringArrayVar(&tags, "tag", nil, "tag KEY=VALUE (repeatable)")
	return cmd
}

func (a *app) modelListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List models: latest version, number of versions, aliases",
		Args:  argsRange(0, 0, "no arguments"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			ms, err := a.client().ListModels(cmd.Context(), ws)
			if err != nil {
				return err
			}
			if ms == nil {
				ms = []hub.Model{}
			}
			return a.emit(ms, func(out io.Writer) {
				fmt.Fprintln(out, "NAME\tLATEST\tVERSIONS\tALIASES\tSIZE\tCREATED")
				for _, m := range ms {
					fmt.Fprintf(out, "%s\t%d\t%d\t%s\t%s\t%s\n", m.Name, m.Latest.Version, m.Versions,
						fmtAliases(m.Aliases), fmtSize(m.Latest.Size), fmtTime(&m.Latest.CreatedAt))
				}
			})
		}),
	}
}

func fmtAliases(as map[string]int) string {
	parts := make([]string, 0, len(as))
	for _, k := range sortedKeys(as) {
		parts = append(parts, k+"="+strconv.Itoa(as[k]))
	}
	return orDash(strings.Join(parts, ","))
}

func (a *app) modelVersionsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "versions NAME",
		Short: "List the versions of a model, newest first",
		Args:  argsRange(1, 1, "NAME"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			vs, err := a.client().ListModelVersions(cmd.Context(), ws, args[0])
			if err != nil {
				return err
			}
			return a.emit(vs, func(out io.Writer) {
				fmt.Fprintln(out, "VERSION\tALIASES\tSHA256\tSIZE\tRUN\tCREATED\tDESCRIPTION")
				for _, v := range vs {
					fmt.Fprintf(out, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Version, orDash(strings.Join(v.Aliases, ",")), v.SHA256[:12],
						fmtSize(v.Size), orDash(v.RunID), fmtTime(&v.CreatedAt), orDash(v.Description))
				}
			})
		}),
	}
}

func (a *app) modelShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME[:VERSION|@ALIAS]",
		Short: "Show a model version (the latest by default) with its signature",
		Long: `Show a model version: digest, size, ONNX IR version, opset, producer, lineage,
tags, aliases, and its inputs and outputs. In shapes, a named dynamic dimension
shows its name (batch) and an unnamed one "?"; in JSON and YAML a fixed
dimension is a number, a named dynamic one its name, an unnamed one -1.`,
		Args: argsRange(1, 1, "NAME[:VERSION|@ALIAS]"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			name, ref, err := parseRef(args[0])
			if err != nil {
				return err
			}
			mv, err := a.client().GetModelVersion(cmd.Context(), ws, name, ref)
			if err != nil {
				return err
			}
			return a.emit(mv, func(out io.Writer) { printModelVersion(out, mv) })
		}),
	}
}

func printModelVersion(out io.Writer, mv *hub.ModelVersion) {
	fmt.Fprintf(out, "Name:\t%s\n", mv.Name)
	fmt.Fprintf(out, "Version:\t%d\n", mv.Version)
	fmt.Fprintf(out, "Aliases:\t%s\n", orDash(strings.Join(mv.Aliases, ", ")))
	fmt.Fprintf(out, "Description:\t%s\n", orDash(mv.Description))
	fmt.Fprintf(out, "SHA256:\t%s\n", mv.SHA256)
	fmt.Fprintf(out, "Size:\t%s (%d bytes)\n", fmtSize(mv.Size), mv.Size)
	fmt.Fprintf(out, "ONNX:\tIR version %d, opset %d, producer %s\n", mv.IRVersion, mv.Opset, orDash(mv.Producer))
	if mv.RunID != "" {
		fmt.Fprintf(out, "Run:\t%s (experiment %s, artifact %s)\n", mv.RunID, mv.Experiment, mv.ArtifactPath)
	} else {
		fmt.Fprintf(out, "Run:\t-\n")
	}
	fmt.Fprintf(out, "Created:\t%s\n", fmtTime(&mv.CreatedAt))
	for _, k := range sortedKeys(mv.Tags) {
		fmt.Fprintf(out, "Tag:\t%s=%s\n", k, mv.Tags[k])
	}
	for _, in := range mv.Inputs {
		fmt.Fprintf(out, "Input:\t%s %s %s\n", in.Name, in.Datatype, hub.ShapeString(in.Shape))
	}
	for _, o := range mv.Outputs {
		fmt.Fprintf(out, "Output:\t%s %s %s\n", o.Name, o.Datatype, hub.ShapeString(o.Shape))
	}
}

func (a *app) modelDownloadCmd() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "download NAME[:VERSION|@ALIAS]",
		Short: "Download the ONNX file of a model version",
		Long: `Download the ONNX file of a model version (the latest by default). If --to is
an existing directory (or ends with a slash) the file is written into it as
NAME-VERSION.onnx; otherwise --to is the file name. The content is checked
against the version's sha256 and written atomically (temporary file, fsync,
rename), so a failed download leaves no partial file.`,
		Args: argsRange(1, 1, "NAME[:VERSION|@ALIAS]"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			name, ref, err := parseRef(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			c := a.client()
			mv, err := c.GetModelVersion(ctx, ws, name, ref)
			if err != nil {
				return err
			}
			dst := to
			if fi, err := os.Stat(to); (err == nil && fi.IsDir()) || strings.HasSuffix(to, "/") || strings.HasSuffix(to, string(filepath.Separator)) {
				if err := os.MkdirAll(to, 0o755); err != nil {
					return fmt.Errorf("download %s: %w", mv.Ref(), err)
				}
				dst = filepath.Join(to, fmt.Sprintf("%s-%d.onnx", mv.Name, mv.Version))
			}
			if err := a.downloadModel(ctx, ws, mv, dst); err != nil {
				return err
			}
			if a.output != formatTable {
				return a.emit(mv, nil)
			}
			fmt.Fprintf(a.stdout, "downloaded %s (%s) to %s\n", mv.Ref(), fmtSize(mv.Size), dst)
			return nil
		}),
	}
	cmd.Flags().StringVar(&to, "to", ".", "directory or file to write")
	return cmd
}

// downloadModel writes version mv to dst through a temporary file in the
// same directory, verifying its sha256 before the rename. It downloads by
// version number, so an alias moved meanwhile cannot mix two versions.
func (a *app) downloadModel(ctx context.Context, ws string, mv *hub.ModelVersion, dst string) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".atelier-download-*")
	if err != nil {
		return fmt.Errorf("download %s: %w", mv.Ref(), err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	p := a.newProgress("downloading "+mv.Ref(), mv.Size)
	err = a.client().DownloadModel(ctx, ws, mv.Name, hub.VersionRef{Version: mv.Version}, io.MultiWriter(tmp, h, p))
	p.done()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = checkSum(h, mv.SHA256)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", mv.Ref(), err)
	}
	return nil
}

func (a *app) modelAliasCmd() *cobra.Command {
	var del bool
	cmd := &cobra.Command{
		Use:   "alias NAME ALIAS [VERSION]",
		Short: "Point an alias at a version (moving it), or delete it with --delete",
		Long: `Point ALIAS of model NAME at VERSION, moving it if it pointed elsewhere; with
--delete, remove ALIAS (no VERSION then). Aliases are ` + hub.AliasRule + `.`,
		Args: argsRange(2, 3, "NAME ALIAS VERSION"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			name, alias := args[0], args[1]
			if del {
				if len(args) == 3 {
					return usageError("alias --delete takes NAME ALIAS, no version")
				}
				if err := a.client().DeleteModelAlias(cmd.Context(), ws, name, alias); err != nil {
					return err
				}
				if a.output == formatTable {
					fmt.Fprintf(a.stdout, "deleted alias %s@%s\n", name, alias)
				}
				return nil
			}
			if len(args) != 3 {
				return usageError("%s: missing VERSION", cmd.CommandPath())
			}
			if err := hub.CheckAlias(alias); err != nil {
				return usageError("%s", strings.TrimSuffix(err.Error(), ": "+hub.ErrInvalid.Error()))
			}
			v, err := strconv.Atoi(args[2])
			if err != nil || v < 1 {
				return usageError("version %q: want a version number", args[2])
			}
			mv, err := a.client().SetModelAlias(cmd.Context(), ws, name, alias, v)
			if err != nil {
				return err
			}
			return a.emit(mv, func(out io.Writer) { fmt.Fprintf(out, "%s@%s -> %s\n", name, alias, mv.Ref()) })
		}),
	}
	cmd.Flags().BoolVar(&del, "delete", false, "delete the alias")
	return cmd
}

func (a *app) modelTagCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "tag NAME:VERSION KEY=VALUE...",
		Short: "Set tags of a model version",
		Args:  argsRange(2, -1, "NAME:VERSION KEY=VALUE..."),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			name, ref, err := parseRef(args[0])
			if err != nil {
				return err
			}
			if ref == (hub.VersionRef{}) {
				return usageError("%q: want NAME:VERSION or NAME@ALIAS", args[0])
			}
			tags, err := parseKV("tag", args[1:])
			if err != nil {
				return err
			}
			mv, err := a.client().SetModelTags(cmd.Context(), ws, name, ref, tags)
			if err != nil {
				return err
			}
			return a.emit(mv, func(out io.Writer) { fmt.Fprintf(out, "tagged %s\n", mv.Ref()) })
		}),
	}
}

func (a *app) modelDeleteCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "delete NAME:VERSION",
		Short: "Delete a model version",
		Long: `Delete a model version. A version that is deployed is refused. A version an
alias points at is refused unless --force is given, which deletes those aliases
too. The stored file is kept while anything else (another version, a run
artifact) refers to the same content.`,
		Args: argsRange(1, 1, "NAME:VERSION"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			name, v, err := parseVersioned(args[0])
			if err != nil {
				return err
			}
			err = a.client().DeleteModelVersion(cmd.Context(), ws, name, v, force)
			if errors.Is(err, hub.ErrConflict) && !force && strings.Contains(err.Error(), "alias") {
				return fmt.Errorf("%w (use --force to delete the alias too)", err)
			}
			if err != nil {
				return err
			}
			if a.output == formatTable {
				fmt.Fprintf(a.stdout, "deleted %s:%d\n", name, v)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&force, "force", false, "also delete the aliases pointing at the version")
	return cmd
}
