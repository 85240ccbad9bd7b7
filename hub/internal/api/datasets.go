package api

import (
	"fmt"
	"net/http"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/dataset"
)

// datasetRoutes are the dataset routes of a workspace (docs/datasets.md).
func (a *API) datasetRoutes() []Route {
	const (
		one     = "/api/v1/workspaces/{ws}"
		ds      = one + "/datasets/{name}"
		version = ds + "/versions/{version}"
	)
	return []Route{
		{Method: "POST", Pattern: ds + "/versions", Summary: "Upload the next version of a dataset: the file as the body; format= jsonl, csv or binary (required), sha256= the expected digest (a mismatch stores nothing), filename=, description=; names starting with capture- are reserved",
			Request: "binary", Response: "Dataset", Status: 201, Query: []string{"format", "sha256", "filename", "description"}, handler: a.uploadDataset},
		{Method: "GET", Pattern: one + "/datasets", Summary: "List datasets (latest version and version count)", Response: "[]DatasetSummary", Status: 200, handler: a.listDatasets},
		{Method: "GET", Pattern: ds + "/versions", Summary: "List the versions of a dataset, newest first", Response: "[]Dataset", Status: 200, handler: a.listDatasetVersions},
		{Method: "GET", Pattern: version, Summary: "Show a dataset version ({version}: a number or latest)", Response: "Dataset", Status: 200, handler: a.getDataset},
		{Method: "GET", Pattern: version + "/content", Summary: "Download the file of a dataset version (X-Content-SHA256 gives its digest)", Response: "binary", Status: 200, handler: a.getDatasetContent},
	}
}

// datasetSchemas adds the dataset JSON types to the OpenAPI schemas,
// derived from the Go types the handlers encode.
func datasetSchemas(s obj) obj {
	for name, v := range map[string]any{
		"DatasetSource":  hub.DatasetSource{},
		"Dataset":        hub.Dataset{},
		"DatasetSummary": hub.DatasetSummary{},
	} {
		s[name] = schemaOfType(reflect.TypeOf(v))
	}
	return s
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// uploadDataset stores the body as the next version of a dataset. The body
// streams through a dataset.Checker into the blob store: content that is
// not of the format, empty, larger than MaxArtifactBytes or not of the
// expected sha256 is refused and nothing is stored (neither the blob nor a
// version).
func (a *API) uploadDataset(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ws, name := r.PathValue("ws"), r.PathValue("name")
	q := r.URL.Query()
	format, sum, filename := q.Get("format"), q.Get("sha256"), q.Get("filename")
	err := hub.CheckDatasetName(name)
	switch {
	case err != nil:
	case strings.HasPrefix(name, hub.CapturePrefix):
		err = fmt.Errorf("upload dataset %q: names starting with %q are reserved for captured inputs: %w", name, hub.CapturePrefix, hub.ErrInvalid)
	case format == "":
		err = fmt.Errorf("upload dataset %q: query parameter format missing: expected one of %s: %w", name, hub.DatasetFormatList, hub.ErrInvalid)
	case sum != "" && !sha256RE.MatchString(sum):
		err = fmt.Errorf("upload dataset %q: query parameter sha256=%q: expected 64 lowercase hex digits: %w", name, sum, hub.ErrInvalid)
	case filename != "" && (filename != path.Base(filename) || strings.ContainsAny(filename, "/\\")):
		err = fmt.Errorf("upload dataset %q: query parameter filename=%q: expected a base name: %w", name, filename, hub.ErrInvalid)
	}
	if err == nil {
		err = hub.CheckDatasetFormat(format)
	}
	if err == nil {
		err = hub.CheckValue("dataset", "description", q.Get("description"))
	}
	if err == nil {
		err = hub.CheckValue("dataset", "filename", filename)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if _, err := a.store.GetWorkspace(ctx, ws); err != nil {
		a.fail(w, r, err)
		return
	}
	max := a.cfg.MaxArtifactBytes
	if r.ContentLength > max {
		a.fail(w, r, fmt.Errorf("upload dataset %q: %d bytes exceed the limit of %d bytes: %w", name, r.ContentLength, max, hub.ErrTooLarge))
		return
	}
	ck, err := dataset.NewChecker(format, r.Body, sum)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	defer ck.Close()
	b, err := a.blobs.Put(ctx, ck, max)
	if err != nil {
		a.fail(w, r, fmt.Errorf("upload dataset %q as %s: %w", name, format, err))
		return
	}
	d, err := a.store.CreateDataset(ctx, ws, hub.DatasetCreate{
		Name: name, Blob: b, Rows: ck.Rows(), Format: format, Description: q.Get("description"),
		Source: hub.DatasetSource{Kind: hub.SourceUpload, Filename: filename},
	}, nil)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, d)
}

func (a *API) listDatasets(w http.ResponseWriter, r *http.Request) {
	list, err := a.store.ListDatasets(r.Context(), r.PathValue("ws"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *API) listDatasetVersions(w http.ResponseWriter, r *http.Request) {
	list, err := a.store.DatasetVersions(r.Context(), r.PathValue("ws"), r.PathValue("name"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// datasetVersion resolves the {name} and {version} of r.
func (a *API) datasetVersion(r *http.Request) (hub.Dataset, error) {
	name, v := r.PathValue("name"), r.PathValue("version")
	n := 0
	if v != hub.Latest {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			return hub.Dataset{}, fmt.Errorf("dataset %q: version %q: expected a positive whole number or %q: %w", name, v, hub.Latest, hub.ErrInvalid)
		}
	}
	return a.store.GetDataset(r.Context(), r.PathValue("ws"), name, n)
}

func (a *API) getDataset(w http.ResponseWriter, r *http.Request) {
	d, err := a.datasetVersion(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (a *API) getDatasetContent(w http.ResponseWriter, r *http.Request) {
	d, err := a.datasetVersion(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("X-Dataset-Version", strconv.Itoa(d.Version))
	a.serveBlob(w, r, d.SHA256)
}
