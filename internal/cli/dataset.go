package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/client"
)

func (a *app) datasetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dataset",
		Short: "Upload, list, show and download datasets of a workspace (-w)",
		Long: `Datasets are named, versioned files of a workspace kept in the hub's blob store
(versions count up per name and never change). The hub writes the inputs it
captures from each deployment to dataset capture-DEPLOYMENT every minute, as
JSON Lines with one KServe v2 request per line; you can upload your own files
too. "atelier run submit --dataset NAME[:VERSION]" puts one into a run's
working directory. See docs/datasets.md.

A dataset reference is NAME (the latest version), NAME:VERSION or NAME:latest.`,
	}
	cmd.AddCommand(a.datasetUploadCmd(), a.datasetListCmd(), a.datasetVersionsCmd(), a.datasetShowCmd(), a.datasetDownloadCmd())
	for _, sub := range cmd.Commands() {
		if strings.Contains(sub.Use, " NAME") {
			sub.ValidArgsFunction = a.completeDatasets
		}
	}
	return cmd
}

// completeDatasets completes dataset names of the -w workspace (first
// argument only).
func (a *app) completeDatasets(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if a.workspace == "" || len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	ds, err := a.client().ListDatasets(ctx, a.workspace)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names := make([]string, 0, len(ds))
	for _, d := range ds {
		names = append(names, d.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// parseDatasetRef parses NAME[:VERSION]; a malformed one is a usage error.
func parseDatasetRef(s string) (string, int, error) {
	name, v, err := hub.ParseDatasetRef(s)
	if err != nil {
		return "", 0, usageError("%s", strings.TrimSuffix(err.Error(), ": "+hub.ErrInvalid.Error()))
	}
	return name, v, nil
}

// formatOf guesses a dataset format from a file name.
func formatOf(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".ndjson":
		return hub.FormatJSONL
	case ".csv":
		return hub.FormatCSV
	}
	return ""
}

// datasetFileName is the file a dataset version is written to in a
// directory: NAME-VERSION.EXT (EXT from the format).
func datasetFileName(d *hub.Dataset) string {
	return fmt.Sprintf("%s-%d%s", d.Name, d.Version, datasetExt(d.Format))
}

func datasetExt(format string) string {
	switch format {
	case hub.FormatJSONL:
		return ".jsonl"
	case hub.FormatCSV:
		return ".csv"
	}
	return ".bin"
}

func (a *app) datasetUploadCmd() *cobra.Command {
	var file, format, description string
	cmd := &cobra.Command{
		Use:   "upload NAME --file PATH",
		Short: "Upload a file as the next version of a dataset",
		Long: `Upload a local file as the next version of dataset NAME. The format is taken
from the file's extension (.jsonl or .ndjson: jsonl, .csv: csv) unless --format
says it (jsonl, csv or binary). The hub checks the content while storing it:
every non-empty line of JSON Lines must be JSON, CSV needs a header row and
records of as many fields; it counts the rows. The file's sha256 is sent along
and checked by the hub. A file that fails a check, is empty, or is larger than
the hub's limit (max_artifact_bytes of the hub config) is refused with the reason
and nothing is stored. Names starting with capture- are the hub's own.`,
		Example: `  atelier dataset upload digits-train --file train.csv -w vision`,
		Args:    argsRange(1, 1, "NAME"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			name := args[0]
			if err := hub.CheckDatasetName(name); err != nil {
				return usageError("%s", strings.TrimSuffix(err.Error(), ": "+hub.ErrInvalid.Error()))
			}
			if file == "" {
				return usageError("%s: give the file with --file PATH", cmd.CommandPath())
			}
			if format == "" {
				if format = formatOf(file); format == "" {
					return usageError("%s: cannot tell the format of %s from its extension: give --format jsonl, csv or binary", cmd.CommandPath(), file)
				}
			}
			if err := hub.CheckDatasetFormat(format); err != nil {
				return usageError("--format: %s", strings.TrimSuffix(err.Error(), ": "+hub.ErrInvalid.Error()))
			}
			f, err := os.Open(file)
			if err != nil {
				return fmt.Errorf("upload dataset %s: %w", name, err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return fmt.Errorf("upload dataset %s: %w", name, err)
			}
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("upload dataset %s: %s is not a regular file", name, file)
			}
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				return fmt.Errorf("upload dataset %s: read %s: %w", name, file, err)
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return fmt.Errorf("upload dataset %s: %w", name, err)
			}
			p := a.newProgress("uploading "+filepath.Base(file), fi.Size())
			d, err := a.client().UploadDataset(cmd.Context(), ws, name, io.TeeReader(f, p), fi.Size(), client.DatasetUploadOptions{
				Format: format, SHA256: hex.EncodeToString(h.Sum(nil)), Filename: filepath.Base(file), Description: description,
			})
			p.done()
			if err != nil {
				return err
			}
			return a.emit(d, func(out io.Writer) {
				fmt.Fprintf(out, "uploaded %s (%s, %d rows, sha256 %s)\n", d.Ref(), fmtSize(d.Size), d.Rows, d.SHA256[:12])
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "", "the file to upload")
	f.StringVar(&format, "format", "", "jsonl, csv or binary (default: from the file's extension)")
	f.StringVarP(&description, "description", "d", "", "what this version is")
	return cmd
}

func (a *app) datasetListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List datasets: latest version, number of versions, rows, size, source",
		Args:  argsRange(0, 0, "no arguments"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			ds, err := a.client().ListDatasets(cmd.Context(), ws)
			if err != nil {
				return err
			}
			if ds == nil {
				ds = []hub.DatasetSummary{}
			}
			return a.emit(ds, func(out io.Writer) {
				fmt.Fprintln(out, "NAME\tLATEST\tVERSIONS\tFORMAT\tROWS\tSIZE\tCREATED\tSOURCE")
				for _, d := range ds {
					l := d.Latest
					fmt.Fprintf(out, "%s\t%d\t%d\t%s\t%d\t%s\t%s\t%s\n", d.Name, l.Version, d.Versions, l.Format, l.Rows,
						fmtSize(l.Size), fmtTime(&l.CreatedAt), l.Source)
				}
			})
		}),
	}
}

func (a *app) datasetVersionsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "versions NAME",
		Short: "List the versions of a dataset, newest first",
		Args:  argsRange(1, 1, "NAME"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			vs, err := a.client().ListDatasetVersions(cmd.Context(), ws, args[0])
			if err != nil {
				return err
			}
			return a.emit(vs, func(out io.Writer) {
				fmt.Fprintln(out, "VERSION\tSHA256\tROWS\tSIZE\tCREATED\tSOURCE")
				for _, v := range vs {
					fmt.Fprintf(out, "%d\t%s\t%d\t%s\t%s\t%s\n", v.Version, v.SHA256[:12], v.Rows, fmtSize(v.Size), fmtTime(&v.CreatedAt), v.Source)
				}
			})
		}),
	}
}

func (a *app) datasetShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME[:VERSION]",
		Short: "Show a dataset version (the latest by default)",
		Args:  argsRange(1, 1, "NAME[:VERSION]"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			name, v, err := parseDatasetRef(args[0])
			if err != nil {
				return err
			}
			d, err := a.client().GetDataset(cmd.Context(), ws, name, v)
			if err != nil {
				return err
			}
			return a.emit(d, func(out io.Writer) {
				fmt.Fprintf(out, "Name:\t%s\n", d.Name)
				fmt.Fprintf(out, "Version:\t%d\n", d.Version)
				fmt.Fprintf(out, "Format:\t%s\n", d.Format)
				fmt.Fprintf(out, "Rows:\t%d\n", d.Rows)
				fmt.Fprintf(out, "Size:\t%s (%d bytes)\n", fmtSize(d.Size), d.Size)
				fmt.Fprintf(out, "SHA256:\t%s\n", d.SHA256)
				fmt.Fprintf(out, "Source:\t%s\n", d.Source)
				fmt.Fprintf(out, "Description:\t%s\n", orDash(d.Description))
				fmt.Fprintf(out, "Created:\t%s\n", fmtTime(&d.CreatedAt))
			})
		}),
	}
}

func (a *app) datasetDownloadCmd() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "download NAME[:VERSION]",
		Short: "Download the file of a dataset version, verified",
		Long: `Download the file of a dataset version (the latest by default). If --to is an
existing directory (or ends with a slash) the file is written into it as
NAME-VERSION.jsonl (.csv, .bin by format); otherwise --to is the file name
("-o" is the output format of every command, hence --to, as for model
download). The content is checked against the version's sha256 and written
atomically (temporary file, fsync, rename): a failed download leaves no file.`,
		Args: argsRange(1, 1, "NAME[:VERSION]"),
		RunE: a.withWorkspace(func(cmd *cobra.Command, ws string, args []string) error {
			name, v, err := parseDatasetRef(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			c := a.client()
			d, err := c.GetDataset(ctx, ws, name, v)
			if err != nil {
				return err
			}
			dst := to
			if fi, err := os.Stat(to); (err == nil && fi.IsDir()) || strings.HasSuffix(to, "/") || strings.HasSuffix(to, string(filepath.Separator)) {
				if err := os.MkdirAll(to, 0o755); err != nil {
					return fmt.Errorf("download dataset %s: %w", d.Ref(), err)
				}
				dst = filepath.Join(to, datasetFileName(d))
			}
			if d, err = c.DownloadDatasetFile(ctx, ws, d.Name, d.Version, dst); err != nil {
				return err
			}
			if a.output != formatTable {
				return a.emit(d, nil)
			}
			fmt.Fprintf(a.stdout, "downloaded %s (%s, %d rows, sha256 verified) to %s\n", d.Ref(), fmtSize(d.Size), d.Rows, dst)
			return nil
		}),
	}
	cmd.Flags().StringVar(&to, "to", ".", "directory or file to write")
	return cmd
}

// runDataset is a dataset version a run uses (run submit --dataset).
type runDataset struct {
	d   *hub.Dataset
	env string // ATELIER_DATASET_<NAME>
}

// param is the run param that records the dataset (lineage).
func (r runDataset) param() string { return "dataset/" + r.d.Name }

// file is the dataset's path relative to the working copy.
func (r runDataset) file() string { return filepath.Join("datasets", r.d.Name+datasetExt(r.d.Format)) }

// datasetEnvName is the variable that carries the path of dataset name to
// a run's command: "capture-digits" → "ATELIER_DATASET_CAPTURE_DIGITS".
func datasetEnvName(name string) string {
	var b strings.Builder
	b.WriteString("ATELIER_DATASET_")
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// resolveDatasets resolves --dataset references to versions (so the run
// records, and gets, exactly those even if a new version appears), before
// the run is created: an unknown one fails the submit with nothing
// recorded.
func (a *app) resolveDatasets(ctx context.Context, ws string, refs []string) ([]runDataset, error) {
	var out []runDataset
	byEnv := map[string]string{}
	for _, ref := range refs {
		name, v, err := parseDatasetRef(ref)
		if err != nil {
			return nil, fmt.Errorf("--dataset: %w", err)
		}
		env := datasetEnvName(name)
		if other, ok := byEnv[env]; ok {
			return nil, usageError("--dataset %s: dataset %s was given already (or one whose name maps to the same %s)", ref, other, env)
		}
		byEnv[env] = name
		d, err := a.client().GetDataset(ctx, ws, name, v)
		if err != nil {
			return nil, fmt.Errorf("--dataset %s: %w", ref, err)
		}
		out = append(out, runDataset{d: d, env: env})
	}
	return out, nil
}

// fetchDatasets downloads each dataset into the working copy work (the
// files verified and renamed into place) and returns the variables that
// tell the command where they are. A file of the snapshot at the same path
// is an error rather than being replaced.
func (a *app) fetchDatasets(ctx context.Context, ws string, inputs []runDataset, work string) ([]string, error) {
	if len(inputs) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Join(work, "datasets"), 0o755); err != nil {
		return nil, fmt.Errorf("datasets: %w", err)
	}
	c := a.client()
	var env []string
	for _, in := range inputs {
		dst := filepath.Join(work, in.file())
		if _, err := os.Lstat(dst); err == nil {
			return nil, fmt.Errorf("dataset %s: %s exists in the snapshot; leave it out (.atelierignore) or rename it", in.d.Ref(), in.file())
		}
		if _, err := c.DownloadDatasetFile(ctx, ws, in.d.Name, in.d.Version, dst); err != nil {
			return nil, fmt.Errorf("dataset %s: %w", in.d.Ref(), err)
		}
		fmt.Fprintf(a.stderr, "atelier: dataset %s (%s, %d rows) at %s\n", in.d.Ref(), fmtSize(in.d.Size), in.d.Rows, in.file())
		env = append(env, in.env+"="+dst)
	}
	return env, nil
}
