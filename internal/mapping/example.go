package mapping

import _ "embed"

// exampleYAML is a copy of examples/mapping.yaml (a test keeps them equal).
//
//go:embed example.yaml
var exampleYAML []byte
