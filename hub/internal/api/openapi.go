package api

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

type obj = map[string]any

func str(desc string) obj  { return obj{"type": "string", "description": desc} }
func ref(name string) obj  { return obj{"$ref": "#/components/schemas/" + name} }
func arrayOf(item obj) obj { return obj{"type": "array", "items": item} }
func mapOf(v obj) obj      { return obj{"type": "object", "additionalProperties": v} }
func props(p obj, req ...string) obj {
	o := obj{"type": "object", "properties": p}
	if len(req) > 0 {
		o["required"] = req
	}
	return o
}

// schemas are the JSON types of the API (package hub's types).
func schemas() obj {
	timeT := obj{"type": "string", "format": "date-time"}
	strMap := mapOf(obj{"type": "string"})
	status := obj{"type": "string", "enum": []string{"queued", "running", "completed", "failed", "canceled"}}
	return obj{
		"Error":            props(obj{"error": str("what went wrong, where, and what was expected"), "code": obj{"type": "string", "enum": []string{"invalid", "not_found", "conflict", "too_large", "method_not_allowed", "internal", "unavailable"}}}, "error", "code"),
		"Health":           props(obj{"status": str("ok")}),
		"WorkspaceCreate":  props(obj{"name": str("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"), "description": str("")}, "name"),
		"Workspace":        props(obj{"name": str(""), "description": str(""), "created_at": timeT, "experiments": obj{"type": "integer"}, "runs": obj{"type": "integer"}}),
		"ExperimentCreate": props(obj{"name": str("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")}, "name"),
		"Experiment":       props(obj{"workspace": str(""), "name": str(""), "created_at": timeT, "runs": obj{"type": "integer"}}),
		"RunCreate": props(obj{"experiment": str("created if missing"), "name": str(""), "parent_id": str("a run of the same workspace"),
			"status": status, "command": arrayOf(obj{"type": "string"}), "params": strMap, "tags": strMap}, "experiment"),
		"RunUpdate": props(obj{"status": status, "exit_code": obj{"type": "integer"}, "error": str("")}, "status"),
		"Run": props(obj{"id": str(""), "workspace": str(""), "experiment": str(""), "name": str(""), "parent_id": str(""),
			"status": status, "command": arrayOf(obj{"type": "string"}), "exit_code": obj{"type": "integer"}, "error": str(""),
			"created_at": timeT, "started_at": timeT, "ended_at": timeT, "params": strMap, "tags": strMap,
			"metrics": mapOf(obj{"type": "number"}), "artifacts": arrayOf(ref("Artifact")), "snapshot": ref("Blob")}),
		"Params":      props(obj{"params": strMap}, "params"),
		"Tags":        props(obj{"tags": strMap}, "tags"),
		"MetricPoint": props(obj{"name": str(""), "value": obj{"type": "number"}, "step": obj{"type": "integer", "format": "int64"}, "timestamp": timeT}, "name", "value"),
		"MetricBatch": props(obj{"metrics": obj{"type": "array", "maxItems": 100000, "items": ref("MetricPoint")}}, "metrics"),
		"LogLine":     props(obj{"seq": obj{"type": "integer", "format": "int64"}, "stream": obj{"type": "string", "enum": []string{"stdout", "stderr"}}, "time": timeT, "text": str("")}),
		"LogBatch":    props(obj{"lines": arrayOf(ref("LogLine"))}, "lines"),
		"Accepted":    props(obj{"accepted": obj{"type": "integer"}, "last_seq": obj{"type": "integer", "format": "int64"}}),
		"Artifact":    props(obj{"path": str(""), "size": obj{"type": "integer", "format": "int64"}, "sha256": str("")}),
		"Blob":        props(obj{"sha256": str(""), "size": obj{"type": "integer", "format": "int64"}}),
	}
}

var pathParamRE = regexp.MustCompile(`\{([a-z]+)(\.\.\.)?\}`)

// OpenAPIPath turns a ServeMux pattern into an OpenAPI path
// ({path...} becomes {path}).
func OpenAPIPath(pattern string) string {
	return pathParamRE.ReplaceAllString(pattern, "{$1}")
}

func schemaFor(name string) obj {
	switch {
	case name == "object":
		return obj{"type": "object"}
	case strings.HasPrefix(name, "[]"):
		return arrayOf(ref(name[2:]))
	}
	return ref(name)
}

// Document builds the OpenAPI 3.0 document of the API.
func (a *API) Document() obj {
	paths := obj{}
	errResp := obj{"description": "error", "content": obj{"application/json": obj{"schema": ref("Error")}}}
	for _, rt := range a.routes() {
		p := OpenAPIPath(rt.Pattern)
		item, _ := paths[p].(obj)
		if item == nil {
			item = obj{}
			paths[p] = item
		}
		var params []obj
		for _, m := range pathParamRE.FindAllStringSubmatch(rt.Pattern, -1) {
			params = append(params, obj{"name": m[1], "in": "path", "required": true, "schema": obj{"type": "string"}})
		}
		for _, q := range rt.Query {
			params = append(params, obj{"name": q, "in": "query", "schema": obj{"type": "string"}})
		}
		ok := obj{"description": http.StatusText(rt.Status)}
		switch rt.Response {
		case "":
		case "binary":
			ok["content"] = obj{"application/octet-stream": obj{"schema": obj{"type": "string", "format": "binary"}}}
		case "ndjson":
			ok["content"] = obj{"application/x-ndjson": obj{"schema": ref("LogLine")}}
		case "ndjson:Event":
			ok["content"] = obj{"application/x-ndjson": obj{"schema": ref("Event")}}
		default:
			ok["content"] = obj{"application/json": obj{"schema": schemaFor(rt.Response)}}
		}
		op := obj{
			"summary":     rt.Summary,
			"operationId": strings.ToLower(rt.Method) + strings.NewReplacer("/", "_", "{", "", "}", "", ".", "").Replace(p),
			"responses":   obj{strconv.Itoa(rt.Status): ok, "default": errResp},
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		switch rt.Request {
		case "":
		case "binary":
			op["requestBody"] = obj{"required": true, "content": obj{"application/octet-stream": obj{"schema": obj{"type": "string", "format": "binary"}}}}
		default:
			op["requestBody"] = obj{"required": true, "content": obj{"application/json": obj{"schema": ref(rt.Request)}}}
		}
		item[strings.ToLower(rt.Method)] = op
	}
	return obj{
		"openapi": "3.0.3",
		"info": obj{"title": "Atelier hub API", "version": "v1",
			"description": "REST API of the Atelier hub. Errors are {\"error\", \"code\"} with 400 invalid, 404 not_found, 409 conflict, 413 too_large, 405 method_not_allowed."},
		"paths":      paths,
		"components": obj{"schemas": datasetSchemas(monitoringSchemas(deploymentSchemas(agentSchemas(modelSchemas(schemas())))))},
	}
}

func (a *API) openapi(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.Document())
}
