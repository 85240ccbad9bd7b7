package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/atelier-ml/atelier/hub"
	"github.com/atelier-ml/atelier/hub/internal/filter"
)

func (a *API) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type workspaceCreate struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

func (a *API) createWorkspace(w http.ResponseWriter, r *http.Request) {
	var body workspaceCreate
	if err := decodeJSON(w, r, a.cfg.MaxBodyBytes, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	ws, err := a.store.CreateWorkspace(r.Context(), body.Name, body.Description)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, ws)
}

func (a *API) listWorkspaces(w http.ResponseWriter, r *http.Request) {
	list, err := a.store.ListWorkspaces(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *API) getWorkspace(w http.ResponseWriter, r *http.Request) {
	ws, err := a.store.GetWorkspace(r.Context(), r.PathValue("ws"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ws)
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("query parameter %s=%q: expected true or false: %w", name, v, hub.ErrInvalid)
	}
	return b, nil
}

func (a *API) deleteWorkspace(w http.ResponseWriter, r *http.Request) {
	force, err := boolParam(r, "force")
	if err == nil {
		err = a.store.DeleteWorkspace(r.Context(), r.PathValue("ws"), force)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type experimentCreate struct {
	Name string `json:"name"`
}

func (a *API) createExperiment(w http.ResponseWriter, r *http.Request) {
	var body experimentCreate
	if err := decodeJSON(w, r, a.cfg.MaxBodyBytes, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	e, err := a.store.CreateExperiment(r.Context(), r.PathValue("ws"), body.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, e)
}

func (a *API) listExperiments(w http.ResponseWriter, r *http.Request) {
	list, err := a.store.ListExperiments(r.Context(), r.PathValue("ws"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *API) getExperiment(w http.ResponseWriter, r *http.Request) {
	e, err := a.store.GetExperiment(r.Context(), r.PathValue("ws"), r.PathValue("exp"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (a *API) createRun(w http.ResponseWriter, r *http.Request) {
	var body hub.RunCreate
	if err := decodeJSON(w, r, a.cfg.MaxBodyBytes, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	run, err := a.store.CreateRun(r.Context(), r.PathValue("ws"), body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, run)
}

// maxTop bounds top=N.
const maxTop = 100_000

func (a *API) listRuns(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	q := hub.RunQuery{Experiment: qv.Get("experiment")}
	var err error
	if q.Filter, err = filter.Parse(qv.Get("filter")); err != nil {
		a.fail(w, r, err)
		return
	}
	if ob := qv.Get("order_by"); ob != "" {
		o, err := filter.ParseOrder(ob)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		q.OrderBy = &o
	}
	if t := qv.Get("top"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 || n > maxTop {
			a.fail(w, r, fmt.Errorf("top=%q: expected a whole number from 1 to %d: %w", t, maxTop, hub.ErrInvalid))
			return
		}
		q.Top = n
	}
	runs, err := a.store.ListRuns(r.Context(), r.PathValue("ws"), q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, runs)
}

func (a *API) getRun(w http.ResponseWriter, r *http.Request) {
	run, err := a.store.GetRun(r.Context(), r.PathValue("ws"), r.PathValue("run"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func runKey(r *http.Request) string { return r.PathValue("ws") + "\x00" + r.PathValue("run") }

func (a *API) updateRun(w http.ResponseWriter, r *http.Request) {
	var body hub.RunUpdate
	if err := decodeJSON(w, r, a.cfg.MaxBodyBytes, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	run, err := a.store.UpdateRun(r.Context(), r.PathValue("ws"), r.PathValue("run"), body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.follow.notify(runKey(r))
	writeJSON(w, http.StatusOK, run)
}

type paramsBody struct {
	Params map[string]string `json:"params"`
}

type tagsBody struct {
	Tags map[string]string `json:"tags"`
}

func (a *API) setParams(w http.ResponseWriter, r *http.Request) {
	var body paramsBody
	if err := decodeJSON(w, r, a.cfg.MaxBodyBytes, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	run, err := a.store.SetParams(r.Context(), r.PathValue("ws"), r.PathValue("run"), body.Params)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (a *API) setTags(w http.ResponseWriter, r *http.Request) {
	var body tagsBody
	if err := decodeJSON(w, r, a.cfg.MaxBodyBytes, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	run, err := a.store.SetTags(r.Context(), r.PathValue("ws"), r.PathValue("run"), body.Tags)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (a *API) deleteTag(w http.ResponseWriter, r *http.Request) {
	run, err := a.store.DeleteTag(r.Context(), r.PathValue("ws"), r.PathValue("run"), r.PathValue("key"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

// Accepted is the response of the batch appends.
type Accepted struct {
	Accepted int   `json:"accepted"`
	LastSeq  int64 `json:"last_seq,omitempty"` // logs: the seq of the last line appended
}

func (a *API) appendMetrics(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(w, r, a.cfg.MaxBatchBytes)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	points, err := decodeMetrics(b, a.cfg.MaxMetricPoints)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.AppendMetrics(r.Context(), r.PathValue("ws"), r.PathValue("run"), points); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, Accepted{Accepted: len(points)})
}

func (a *API) getMetrics(w http.ResponseWriter, r *http.Request) {
	pts, err := a.store.Metrics(r.Context(), r.PathValue("ws"), r.PathValue("run"), r.URL.Query().Get("name"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, pts)
}

type logsBody struct {
	Lines []hub.LogLine `json:"lines"`
}

func (a *API) appendLogs(w http.ResponseWriter, r *http.Request) {
	var body logsBody
	if err := decodeJSON(w, r, a.cfg.MaxBatchBytes, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	if len(body.Lines) > a.cfg.MaxLogLines {
		a.fail(w, r, fmt.Errorf("%d log lines exceed the limit of %d per request: %w", len(body.Lines), a.cfg.MaxLogLines, hub.ErrTooLarge))
		return
	}
	for i := range body.Lines {
		if body.Lines[i].Stream == "" {
			body.Lines[i].Stream = hub.Stdout
		}
	}
	last, err := a.store.AppendLogs(r.Context(), r.PathValue("ws"), r.PathValue("run"), body.Lines)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.follow.notify(runKey(r))
	writeJSON(w, http.StatusOK, Accepted{Accepted: len(body.Lines), LastSeq: last})
}

const logPage = 1000

func (a *API) getLogs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ws, id := r.PathValue("ws"), r.PathValue("run")
	follow, err := boolParam(r, "follow")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var after int64
	if s := r.URL.Query().Get("after"); s != "" {
		if after, err = strconv.ParseInt(s, 10, 64); err != nil || after < 0 {
			a.fail(w, r, fmt.Errorf("after=%q: expected a sequence number >= 0: %w", s, hub.ErrInvalid))
			return
		}
	}
	key := runKey(r)
	started := false
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	flusher, _ := w.(http.Flusher)
	for {
		wake := a.follow.wait(key) // before reading, so no append is missed
		lines, st, err := a.store.Logs(ctx, ws, id, after, logPage)
		if err != nil {
			if !started {
				a.fail(w, r, err)
			}
			return
		}
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		for _, l := range lines {
			if err := enc.Encode(l); err != nil {
				return
			}
			after = l.Seq
		}
		if err := bw.Flush(); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		if len(lines) == logPage {
			continue
		}
		if !follow || st.Final() {
			return
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return
		case <-a.closing:
			return
		}
	}
}

// checkArtifactPath enforces: relative, '/'-separated, no empty, "." or
// ".." segments, no backslashes or NUL, at most 1024 bytes.
func checkArtifactPath(p string) error {
	const rule = "a relative path of '/'-separated names, without empty, '.' or '..' segments, backslashes or NUL, at most 1024 bytes"
	bad := p == "" || len(p) > 1024 || strings.ContainsAny(p, "\\\x00")
	if !bad {
		for _, seg := range strings.Split(p, "/") {
			if seg == "" || seg == "." || seg == ".." {
				bad = true
				break
			}
		}
	}
	if bad {
		return fmt.Errorf("artifact path %q: expected %s: %w", p, rule, hub.ErrInvalid)
	}
	return nil
}

func (a *API) putArtifact(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ws, id, path := r.PathValue("ws"), r.PathValue("run"), r.PathValue("path")
	if err := checkArtifactPath(path); err != nil {
		a.fail(w, r, err)
		return
	}
	if _, err := a.store.GetRun(ctx, ws, id); err != nil {
		a.fail(w, r, err)
		return
	}
	b, err := a.blobs.Put(ctx, r.Body, a.cfg.MaxArtifactBytes)
	if err != nil {
		a.fail(w, r, fmt.Errorf("artifact %q: %w", path, err))
		return
	}
	art := hub.Artifact{Path: path, Size: b.Size, SHA256: b.SHA256}
	if err := a.store.PutArtifact(ctx, ws, id, art); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, art)
}

func (a *API) listArtifacts(w http.ResponseWriter, r *http.Request) {
	list, err := a.store.ListArtifacts(r.Context(), r.PathValue("ws"), r.PathValue("run"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *API) getArtifact(w http.ResponseWriter, r *http.Request) {
	path := r.PathValue("path")
	if path == "" {
		a.listArtifacts(w, r)
		return
	}
	art, err := a.store.GetArtifact(r.Context(), r.PathValue("ws"), r.PathValue("run"), path)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.serveBlob(w, r, art.SHA256)
}

func (a *API) serveBlob(w http.ResponseWriter, r *http.Request, sum string) {
	f, _, err := a.blobs.Open(r.Context(), sum)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	defer f.Close()
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Header().Set("ETag", `"sha256:`+sum+`"`)
	w.Header().Set("X-Content-SHA256", sum)
	http.ServeContent(w, r, "", timeZero, f)
}

// gzipMagic starts every gzip stream.
var gzipMagic = []byte{0x1f, 0x8b}

func (a *API) putSnapshot(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ws, id := r.PathValue("ws"), r.PathValue("run")
	if _, err := a.store.GetRun(ctx, ws, id); err != nil {
		a.fail(w, r, err)
		return
	}
	head := make([]byte, 2)
	n, _ := io.ReadFull(r.Body, head)
	if n < 2 || head[0] != gzipMagic[0] || head[1] != gzipMagic[1] {
		a.fail(w, r, fmt.Errorf("snapshot: expected a tar.gz body (gzip magic 1f 8b): %w", hub.ErrInvalid))
		return
	}
	b, err := a.blobs.Put(ctx, io.MultiReader(bytesReader(head), r.Body), a.cfg.MaxArtifactBytes)
	if err != nil {
		a.fail(w, r, fmt.Errorf("snapshot: %w", err))
		return
	}
	if err := a.store.SetSnapshot(ctx, ws, id, b); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (a *API) getSnapshot(w http.ResponseWriter, r *http.Request) {
	run, err := a.store.GetRun(r.Context(), r.PathValue("ws"), r.PathValue("run"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if run.Snapshot == nil {
		a.fail(w, r, fmt.Errorf("snapshot of run %q: %w", run.ID, hub.ErrNotFound))
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	a.serveBlob(w, r, run.Snapshot.SHA256)
}
