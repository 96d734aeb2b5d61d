package schemas

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite schemas/json/*.schema.json from the Go types")

// The JSON Schema documents are the published contract of every topic; they
// must say exactly what the Go types encode.
func TestJSONSchemaFilesMatchGoTypes(t *testing.T) {
	for name, v := range Documents {
		want, err := json.MarshalIndent(JSONSchema(name, v), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, '\n')
		path := filepath.Join("json", name+".schema.json")
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run: go test ./schemas -update)", err)
		}
		if string(got) != string(want) {
			t.Errorf("%s is out of date with the Go type %T: run go test ./schemas -update", path, v)
		}
	}
}

// Every required field of a schema is present in a zero value's JSON, and no
// field appears that the schema does not list.
func TestSchemasDescribeEncodedRecords(t *testing.T) {
	t.Parallel()
	for name, v := range Documents {
		s := JSONSchema(name, v)
		b, _ := json.Marshal(v)
		var obj map[string]any
		if err := json.Unmarshal(b, &obj); err != nil {
			t.Fatal(err)
		}
		props := s["properties"].(map[string]any)
		for k := range obj {
			if _, ok := props[k]; !ok {
				t.Errorf("%s: encoded field %q not in schema", name, k)
			}
		}
		for _, r := range s["required"].([]string) {
			if _, ok := obj[r]; !ok {
				t.Errorf("%s: required %q missing from an encoded record", name, r)
			}
		}
	}
}

func TestTopicsAreUniqueAndCompactedWhereKeyed(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, tp := range Topics {
		if seen[tp.Name] {
			t.Errorf("topic %s listed twice", tp.Name)
		}
		seen[tp.Name] = true
	}
	for _, keyed := range []string{"identity", "entitlements", "mismatches"} {
		found := false
		for _, tp := range Topics {
			if tp.Name == keyed {
				found = tp.Compact
			}
		}
		if !found {
			t.Errorf("%s must be compacted", keyed)
		}
	}
}
