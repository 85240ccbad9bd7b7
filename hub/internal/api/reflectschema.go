package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"time"

	"github.com/atelier-ml/atelier/hub"
)

// monitoringSchemas adds the schemas of the monitoring answers, derived
// from the Go types the handlers encode (so they cannot drift apart).
func monitoringSchemas(s obj) obj {
	for name, v := range map[string]any{
		"RequestMetrics":    hub.RequestMetrics{},
		"DeploymentMetrics": hub.DeploymentMetrics{},
		"AgentMetrics":      hub.AgentMetrics{},
		"FeatureDrift":      hub.FeatureDrift{},
		"DriftReport":       hub.DriftReport{},
		"CapturedInput":     hub.CapturedInput{},
		"Event":             hub.Event{},
	} {
		s[name] = schemaOfType(reflect.TypeOf(v))
	}
	return s
}

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

// schemaOfType is the OpenAPI schema of what encoding/json makes of t.
func schemaOfType(t reflect.Type) obj {
	switch t {
	case timeType:
		return obj{"type": "string", "format": "date-time"}
	case rawType:
		return obj{"type": "object", "description": "JSON as stored"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOfType(t.Elem())
	case reflect.Bool:
		return obj{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return obj{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return obj{"type": "number"}
	case reflect.String:
		return obj{"type": "string"}
	case reflect.Slice, reflect.Array:
		return arrayOf(schemaOfType(t.Elem()))
	case reflect.Map:
		return mapOf(schemaOfType(t.Elem()))
	case reflect.Struct:
		p := obj{}
		for f := range t.Fields() {
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch name {
			case "-":
				continue
			case "":
				name = f.Name
			}
			p[name] = schemaOfType(f.Type)
		}
		return obj{"type": "object", "properties": p}
	}
	return obj{}
}
