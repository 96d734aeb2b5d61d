package schemas

import (
	"encoding/json"
	"reflect"
	"strings"
	"time"
)

// Documents maps each JSON Schema file in schemas/json/ to the Go type it
// describes. The files are generated from the types (go test ./schemas
// -update) and a test fails when they drift apart.
var Documents = map[string]any{
	"raw_event":   RawEvent{},
	"cdc_change":  Change{},
	"identity":    Identity{},
	"entitlement": Entitlement{},
	"decision":    Decision{},
	"mismatch":    Mismatch{},
	"sink_result": SinkResult{},
	"dead_letter": DeadLetter{},
	"rejection":   Rejection{},
}

// JSONSchema returns the JSON Schema (draft 2020-12) of v's type: every field
// with its JSON name; fields without omitempty are required.
func JSONSchema(name string, v any) map[string]any {
	s := schemaOf(reflect.TypeOf(v))
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = "urn:launchready:schema:" + name
	s["title"] = reflect.TypeOf(v).Name()
	return s
}

var (
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage{})
)

func schemaOf(t reflect.Type) map[string]any {
	if t.Kind() == reflect.Pointer {
		return schemaOf(t.Elem())
	}
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType:
		return map[string]any{"description": "any JSON value, kept as received"}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object"}
	case reflect.Struct:
		props := map[string]any{}
		var required []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" || !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if name == "" {
				name = f.Name
			}
			props[name] = schemaOf(f.Type)
			if !strings.Contains(opts, "omitempty") {
				required = append(required, name)
			}
		}
		out := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			out["required"] = required
		}
		return out
	}
	return map[string]any{}
}
