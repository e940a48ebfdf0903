// Package api holds the OpenAPI 3 document of gantry server's HTTP API,
// kept in the repository next to this file and served at /api/openapi.json.
package api

import _ "embed"

// OpenAPI is openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte
