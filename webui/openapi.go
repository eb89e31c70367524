package webui

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

// openAPIDocument is the OpenAPI 3.1 description of every /api/v1 route: methods, paths,
// parameters, bodies, answers, schemas of the types in apitypes.go and auth_api.go, the
// bearer token scheme and the role each operation needs. openapi_test.go checks it against
// NewAPI's route table, apiRoutes and the Go types, so that it cannot drift from the code.
//
//go:embed openapi.json
var openAPIDocument []byte

// openAPIPattern is the route of the document. It needs no token: the document holds no
// secrets (and is in the source anyway).
const openAPIPattern = "GET /api/v1/openapi.json"

// openAPIETag lets clients revalidate the document cheaply; it changes with the binary.
var openAPIETag = func() string {
	sum := sha256.Sum256(openAPIDocument)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}()

// registerOpenAPI serves the document at openAPIPattern on each mux: the web address's
// (ahead of its API token check) and the API's (which the control socket serves).
func registerOpenAPI(muxes ...*http.ServeMux) {
	for _, mux := range muxes {
		mux.HandleFunc(openAPIPattern, serveOpenAPI)
	}
}

// serveOpenAPI answers the document, with its ETag for conditional requests.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", openAPIETag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(openAPIDocument))
}
