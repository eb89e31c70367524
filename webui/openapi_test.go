package webui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tests of openapi.json: it is a well-formed OpenAPI 3.1 document; it describes exactly
// the routes of NewAPI's table, with the access and audit action of apiRoutes; its schemas
// have exactly the JSON fields of the Go types; the live API answers what it says; and both
// the web address and the control socket serve it without a token.

// openAPIDoc parses the embedded document, refusing duplicate object keys (which
// encoding/json would silently resolve to the last one).
func openAPIDoc(t *testing.T) map[string]any {
	t.Helper()
	if err := checkNoDuplicateKeys(json.NewDecoder(bytes.NewReader(openAPIDocument)), "$"); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	return doc
}

// checkNoDuplicateKeys reads one JSON value from dec and fails on an object with a key twice.
func checkNoDuplicateKeys(dec *json.Decoder, at string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			key := k.(string)
			if seen[key] {
				return fmt.Errorf("%s: key %q twice", at, key)
			}
			seen[key] = true
			if err := checkNoDuplicateKeys(dec, at+"."+key); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := checkNoDuplicateKeys(dec, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	return nil
}

// obj returns v[key] as an object, nil when absent or not one.
func obj(v any, key string) map[string]any {
	m, _ := v.(map[string]any)
	o, _ := m[key].(map[string]any)
	return o
}

// resolveRef follows a local JSON pointer ("#/components/schemas/APIPeer") in doc.
func resolveRef(doc map[string]any, ref string) (any, bool) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var cur any = doc
	for _, part := range strings.Split(p, "/") {
		part = strings.NewReplacer("~1", "/", "~0", "~").Replace(part)
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// deref returns v, or what its $ref points to.
func deref(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	m, _ := v.(map[string]any)
	if ref, ok := m["$ref"].(string); ok {
		target, ok := resolveRef(doc, ref)
		if !ok {
			t.Fatalf("$ref %s does not resolve", ref)
		}
		m, _ = target.(map[string]any)
	}
	return m
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// openAPIOp is one operation of the document.
type openAPIOp struct {
	route string // "GET /api/v1/status", as in NewAPI's table
	path  string
	op    map[string]any
	// params are the operation's parameters with the path item's, $refs resolved.
	params []map[string]any
}

func openAPIOps(t *testing.T, doc map[string]any) []openAPIOp {
	t.Helper()
	var out []openAPIOp
	for _, path := range slices.Sorted(maps.Keys(obj(doc, "paths"))) {
		item := obj(obj(doc, "paths"), path)
		for _, m := range httpMethods {
			op := obj(item, m)
			if op == nil {
				continue
			}
			o := openAPIOp{route: strings.ToUpper(m) + " " + path, path: path, op: op}
			for _, list := range []any{item["parameters"], op["parameters"]} {
				ps, _ := list.([]any)
				for _, p := range ps {
					o.params = append(o.params, deref(t, doc, p))
				}
			}
			out = append(out, o)
		}
	}
	return out
}

func (o openAPIOp) param(in, name string) map[string]any {
	for _, p := range o.params {
		if p["in"] == in && p["name"] == name {
			return p
		}
	}
	return nil
}

var pathParam = regexp.MustCompile(`\{([^}/]+)\}`)

// TestOpenAPIDocument checks the document's structure: the required top-level keys, every
// $ref resolving, every operation with answers, path parameters matching the paths, and the
// security and tags it names existing.
func TestOpenAPIDocument(t *testing.T) {
	doc := openAPIDoc(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi = %q, want 3.1.x", v)
	}
	info := obj(doc, "info")
	for _, k := range []string{"title", "version", "description"} {
		if s, _ := info[k].(string); s == "" {
			t.Errorf("info.%s is missing", k)
		}
	}
	if len(obj(doc, "paths")) == 0 {
		t.Fatal("no paths")
	}
	for k := range doc {
		if !slices.Contains([]string{"openapi", "info", "jsonSchemaDialect", "servers", "paths", "webhooks", "components", "security", "tags", "externalDocs"}, k) && !strings.HasPrefix(k, "x-") {
			t.Errorf("unknown top-level key %q", k)
		}
	}

	// Every $ref anywhere resolves.
	var refs int
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				refs++
				if _, ok := resolveRef(doc, ref); !ok {
					t.Errorf("%s: $ref %q does not resolve", at, ref)
				}
			}
			for k, e := range v {
				walk(e, at+"/"+k)
			}
		case []any:
			for i, e := range v {
				walk(e, fmt.Sprintf("%s[%d]", at, i))
			}
		}
	}
	walk(doc, "#")
	if refs == 0 {
		t.Error("no $ref at all")
	}

	schemes := obj(obj(doc, "components"), "securitySchemes")
	checkSecurity := func(at string, v any) {
		list, ok := v.([]any)
		if !ok {
			t.Errorf("%s: security is not a list", at)
			return
		}
		for _, req := range list {
			for name := range req.(map[string]any) {
				if schemes[name] == nil {
					t.Errorf("%s: security scheme %q is not in components.securitySchemes", at, name)
				}
			}
		}
	}
	checkSecurity("#", doc["security"])
	if s := obj(schemes, "apiToken"); s["type"] != "http" || s["scheme"] != "bearer" {
		t.Errorf("apiToken scheme = %v, want http bearer", s)
	}
	tags := map[string]bool{}
	for _, tg := range doc["tags"].([]any) {
		tags[tg.(map[string]any)["name"].(string)] = true
	}

	opIDs := map[string]bool{}
	for path, item := range obj(doc, "paths") {
		if !strings.HasPrefix(path, "/api/v1/") {
			t.Errorf("path %s is not under /api/v1/", path)
		}
		for k := range item.(map[string]any) {
			if !slices.Contains(httpMethods, k) && !slices.Contains([]string{"summary", "description", "parameters", "servers", "$ref"}, k) {
				t.Errorf("%s: unknown key %q", path, k)
			}
		}
	}
	for _, o := range openAPIOps(t, doc) {
		id, _ := o.op["operationId"].(string)
		if id == "" || opIDs[id] {
			t.Errorf("%s: operationId %q missing or not unique", o.route, id)
		}
		opIDs[id] = true
		for _, k := range []string{"summary", "description"} {
			if s, _ := o.op[k].(string); s == "" {
				t.Errorf("%s: no %s", o.route, k)
			}
		}
		for _, tg := range o.op["tags"].([]any) {
			if !tags[tg.(string)] {
				t.Errorf("%s: tag %q is not declared", o.route, tg)
			}
		}
		if v, ok := o.op["security"]; ok {
			checkSecurity(o.route, v)
		}
		resps := obj(o.op, "responses")
		if len(resps) == 0 {
			t.Errorf("%s: no responses", o.route)
		}
		success := 0
		for code, r := range resps {
			if n, err := strconv.Atoi(code); err != nil || n < 100 || n > 599 {
				t.Errorf("%s: response code %q", o.route, code)
			} else if n < 300 {
				success++
			}
			if d, _ := deref(t, doc, r)["description"].(string); d == "" {
				t.Errorf("%s %s: response without a description", o.route, code)
			}
		}
		if success != 1 {
			t.Errorf("%s: %d success answers, want 1", o.route, success)
		}
		// Path parameters: each {name} of the path has one, required, and no other.
		want := map[string]bool{}
		for _, m := range pathParam.FindAllStringSubmatch(o.path, -1) {
			want[m[1]] = true
		}
		for _, p := range o.params {
			name, _ := p["name"].(string)
			if s := obj(p, "schema"); s == nil {
				t.Errorf("%s: parameter %s has no schema", o.route, name)
			}
			if d, _ := p["description"].(string); d == "" {
				t.Errorf("%s: parameter %s has no description", o.route, name)
			}
			switch p["in"] {
			case "path":
				if !want[name] || p["required"] != true {
					t.Errorf("%s: path parameter %s is not in the path, or not required", o.route, name)
				}
				delete(want, name)
			case "query", "header":
			default:
				t.Errorf("%s: parameter %s in %v", o.route, name, p["in"])
			}
		}
		for name := range want {
			t.Errorf("%s: path parameter {%s} is not described", o.route, name)
		}
		if rb := o.op["requestBody"]; rb != nil {
			if len(obj(deref(t, doc, rb), "content")) == 0 {
				t.Errorf("%s: request body without content", o.route)
			}
		}
	}

	// Schemas: required names only properties; every type is a JSON Schema type.
	for name, s := range obj(obj(doc, "components"), "schemas") {
		props := obj(s, "properties")
		req, _ := s.(map[string]any)["required"].([]any)
		for _, r := range req {
			if props[r.(string)] == nil {
				t.Errorf("schema %s: required %q is not a property", name, r)
			}
		}
		var checkTypes func(v any, at string)
		checkTypes = func(v any, at string) {
			m, ok := v.(map[string]any)
			if !ok {
				return
			}
			for _, tp := range schemaTypes(m) {
				if !slices.Contains([]string{"object", "array", "string", "integer", "number", "boolean", "null"}, tp) {
					t.Errorf("%s: type %q", at, tp)
				}
			}
			for k, e := range m {
				if k == "properties" {
					for pk, pv := range e.(map[string]any) {
						checkTypes(pv, at+"."+pk)
					}
				} else {
					checkTypes(e, at)
				}
			}
		}
		checkTypes(s, name)
	}
}

// schemaTypes returns a schema's "type" as a list ("string", or ["string", "null"]).
func schemaTypes(s map[string]any) []string {
	switch v := s["type"].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, e.(string))
		}
		return out
	}
	return nil
}

// apiTableRoutes reads the route patterns of NewAPI's table from api.go, so that the list of
// routes is written once, in the code.
func apiTableRoutes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "api.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	route := regexp.MustCompile(`^(GET|HEAD|POST|PUT|PATCH|DELETE) /api/v1/`)
	var out []string
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "NewAPI" {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok || len(cl.Elts) == 0 {
				return true
			}
			first := cl.Elts[0]
			if kv, ok := first.(*ast.KeyValueExpr); ok {
				first = kv.Value
			}
			if lit, ok := first.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && route.MatchString(s) {
					out = append(out, s)
				}
			}
			return true
		})
	}
	if len(out) < 10 {
		t.Fatalf("found %d routes in NewAPI's table in api.go: has the table moved, or do its patterns no longer start with a string literal?", len(out))
	}
	return out
}

// TestOpenAPIRoutes: the document describes exactly the routes of NewAPI's table (and itself),
// the API routes each to the pattern of its path, and each operation's access, audit action
// and refusals are those of apiRoutes.
func TestOpenAPIRoutes(t *testing.T) {
	doc := openAPIDoc(t)
	ops := openAPIOps(t, doc)
	inDoc := map[string]openAPIOp{}
	for _, o := range ops {
		inDoc[o.route] = o
	}
	table := apiTableRoutes(t)
	want := map[string]bool{openAPIPattern: true}
	for _, r := range table {
		if want[r] {
			t.Errorf("%s twice in NewAPI's table", r)
		}
		want[r] = true
		if _, ok := inDoc[r]; !ok {
			t.Errorf("%s is in NewAPI's table but not in openapi.json", r)
		}
	}
	for r := range inDoc {
		if !want[r] {
			t.Errorf("%s is in openapi.json but not in NewAPI's table", r)
		}
	}

	// The real mux routes each documented path to that pattern (not to the catch-all).
	api := NewAPI(nil, nil, slog.New(slog.DiscardHandler))
	registerOpenAPI(api.mux)
	access := map[string]apiRoute{}
	for _, rt := range apiRoutes() {
		access[rt.pattern] = rt
	}
	names := map[apiAccess]string{accessRead: "read", accessChange: "change", accessOwner: "owner"}
	for _, o := range ops {
		method, path, _ := strings.Cut(o.route, " ")
		path = pathParam.ReplaceAllString(path, "x")
		if _, pattern := api.mux.Handler(httptest.NewRequest(method, path, nil)); pattern != o.route {
			t.Errorf("%s: the API routes %s %s to %q", o.route, method, path, pattern)
		}
		resps := obj(o.op, "responses")
		has := func(code string) bool { return resps[code] != nil }
		if o.route == openAPIPattern {
			if sec, ok := o.op["security"].([]any); !ok || len(sec) != 0 {
				t.Errorf("%s: security = %v, want [] (no token)", o.route, o.op["security"])
			}
			continue
		}
		rt, ok := access[o.route]
		gotAccess, _ := o.op["x-popgate-access"].(string)
		switch {
		case !ok && gotAccess != "none":
			t.Errorf("%s is not in apiRoutes (refused on the web address) but x-popgate-access is %q, want none", o.route, gotAccess)
		case ok && gotAccess != names[rt.access]:
			t.Errorf("%s: x-popgate-access %q, apiRoutes says %q", o.route, gotAccess, names[rt.access])
		}
		if action, _ := o.op["x-popgate-audit-action"].(string); action != rt.action {
			t.Errorf("%s: x-popgate-audit-action %q, apiRoutes says %q", o.route, action, rt.action)
		}
		if rt.action != "" && !strings.Contains(o.op["description"].(string), "`"+rt.action+"`") {
			t.Errorf("%s: the description does not name the audit action %s", o.route, rt.action)
		}
		if d, _ := o.op["description"].(string); !strings.Contains(d, "**Role:**") {
			t.Errorf("%s: the description does not say which role it needs", o.route)
		}
		// Who can be refused (403): see apiRoute.refusal and scopedQuery.
		refusable := rt.access != accessRead || strings.Contains(o.path, "{tenant}") || o.param("query", "tenant") != nil
		if has("403") != refusable {
			t.Errorf("%s: 403 documented %v, want %v", o.route, has("403"), refusable)
		}
		if !has("401") || !has("500") {
			t.Errorf("%s: 401 and 500 must be documented", o.route)
		}
		if rt.hashes && !has("503") {
			t.Errorf("%s hashes a password: 503 (busy) must be documented", o.route)
		}
		if o.op["requestBody"] != nil && !has("400") {
			t.Errorf("%s takes a body: 400 must be documented", o.route)
		}
		if pathParam.MatchString(o.path) && !has("404") {
			t.Errorf("%s names objects in its path: 404 must be documented", o.route)
		}
		for code, r := range resps {
			n, _ := strconv.Atoi(code)
			if n < 400 {
				continue
			}
			if ref, _ := obj(obj(deref(t, doc, r), "content"), "application/json")["schema"].(map[string]any)["$ref"].(string); ref != "#/components/schemas/APIError" {
				t.Errorf("%s %s: the answer is not an APIError", o.route, code)
			}
		}
	}
}

// apiSchemaTypes are the Go types of the API's bodies, by schema name. TestOpenAPISchemas
// checks the list against the type declarations of apitypes.go and auth_api.go.
var apiSchemaTypes = map[string]reflect.Type{}

func init() {
	for _, v := range []any{
		APIError{}, APITenant{}, APITenantUpdate{}, APITenantLimits{}, APIRoute{}, APIRoutes{}, APIPolicySet{},
		APITenants{}, APINewTenant{}, APIPeer{}, APIPeers{}, APINewPeer{}, APIPeerUpdate{},
		APIPeerCreated{}, APIStatus{}, APITenantStatus{}, APIExitFlows{}, APIRuleStat{}, APINode{}, APIDevice{},
		APIPeerCounts{}, APIHandshakes{}, APIDesiredState{},
		APIAdmin{}, APIAdmins{}, APINewAdmin{}, APIAdminUpdate{}, APIAdminPassword{},
		APIAdminCreated{}, APIToken{}, APITokens{}, APINewToken{}, APITokenCreated{},
		APIAuditEntry{}, APIAuditLog{}, APIPeerRename{}, APIPeerExpiry{}, APINewDownloadLink{},
		APIDownloadLink{}, APIPeerRotate{}, APIPolicyWarning{},
		APIRegion{}, APIRegions{}, APINewRegion{}, APIRegionUpdate{},
		APIJoinedNode{}, APIJoinedNodes{}, APINewNodeToken{}, APINodeToken{}, APIControllerLink{},
		APIRouteExit{}, APIBackboneLink{}, APIBackbone{},
		APIEvent{}, APIEvents{}, APIWebhook{}, APIWebhookSet{}, APIWebhookCreated{},
		APICheck{}, APICheckWindow{}, APICheckLatest{}, APIChecks{}, APINewCheck{},
		APITraffic{}, APITrafficPoint{},
		APIDNSZone{}, APIDNSZones{},
		APIDNSUpstreams{}, APIDNSUpstreamsSet{}, APIDNSLog{}, APIDNSLogEntry{}, APIDNSLogSettings{}, APIDNSLogEnable{},
		APIBlocklist{}, APIBlocklists{}, APINewBlocklist{},
	} {
		tp := reflect.TypeOf(v)
		apiSchemaTypes[tp.Name()] = tp
	}
}

// declaredStructs lists the exported struct types declared in the files.
func declaredStructs(t *testing.T, files ...string) []string {
	t.Helper()
	var out []string
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, s := range g.Specs {
				ts := s.(*ast.TypeSpec)
				if _, ok := ts.Type.(*ast.StructType); ok && ts.Name.IsExported() {
					out = append(out, ts.Name.Name)
				}
			}
		}
	}
	return out
}

// jsonField is a field of a Go type as encoding/json sees it.
type jsonField struct {
	name      string
	typ       reflect.Type
	omitempty bool
}

func jsonFields(tp reflect.Type) []jsonField {
	var out []jsonField
	for f := range tp.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, typ: f.Type, omitempty: slices.Contains(strings.Split(opts, ","), "omitempty")})
	}
	return out
}

// reachableSchemas returns the schema names reachable through $refs from the request bodies
// (requests) or the answers (!requests) of the operations.
func reachableSchemas(t *testing.T, doc map[string]any, requests bool) map[string]bool {
	out := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				if name, ok := strings.CutPrefix(ref, "#/components/schemas/"); ok && !out[name] {
					out[name] = true
					walk(obj(obj(doc, "components"), "schemas")[name])
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	for _, o := range openAPIOps(t, doc) {
		if requests {
			if rb := o.op["requestBody"]; rb != nil {
				walk(deref(t, doc, rb)["content"])
			}
			continue
		}
		for _, r := range obj(o.op, "responses") {
			walk(deref(t, doc, r)["content"])
		}
	}
	return out
}

// TestOpenAPISchemas: every type of apitypes.go and auth_api.go has a schema of its name with
// exactly its JSON fields, of matching types; fields always in an answer are required; request
// bodies refuse unknown fields like decode does; everything is described.
func TestOpenAPISchemas(t *testing.T) {
	doc := openAPIDoc(t)
	schemas := obj(obj(doc, "components"), "schemas")
	declared := declaredStructs(t, "apitypes.go", "auth_api.go")
	slices.Sort(declared)
	if listed := slices.Sorted(maps.Keys(apiSchemaTypes)); !slices.Equal(declared, listed) {
		t.Fatalf("apiSchemaTypes lists %v\nbut apitypes.go and auth_api.go declare %v", listed, declared)
	}
	if names := slices.Sorted(maps.Keys(schemas)); !slices.Equal(names, declared) {
		t.Errorf("components.schemas has %v\nwant the API types %v", names, declared)
	}
	inAnswers := reachableSchemas(t, doc, false)
	inRequests := reachableSchemas(t, doc, true)
	for _, name := range declared {
		if !inAnswers[name] && !inRequests[name] {
			t.Errorf("schema %s is used by no operation", name)
		}
	}
	for name, tp := range apiSchemaTypes {
		s, _ := schemas[name].(map[string]any)
		if s == nil {
			continue
		}
		if s["type"] != "object" {
			t.Errorf("%s: type %v, want object", name, s["type"])
		}
		if d, _ := s["description"].(string); !strings.HasPrefix(d, name+" ") {
			t.Errorf("%s: the description should be the Go comment, %q", name, d)
		}
		props := obj(s, "properties")
		var required []string
		req, _ := s["required"].([]any)
		for _, r := range req {
			required = append(required, r.(string))
		}
		fields := jsonFields(tp)
		for _, f := range fields {
			p, _ := props[f.name].(map[string]any)
			if p == nil {
				t.Errorf("%s: field %q (%s) is not in the schema", name, f.name, f.typ)
				continue
			}
			if d, _ := p["description"].(string); d == "" {
				t.Errorf("%s.%s: no description", name, f.name)
			}
			checkFieldSchema(t, name+"."+f.name, f.typ, p)
			req := slices.Contains(required, f.name)
			switch {
			case inAnswers[name] && req == f.omitempty:
				t.Errorf("%s.%s: required %v, but the field is always in an answer: %v", name, f.name, req, !f.omitempty)
			case req && f.omitempty:
				t.Errorf("%s.%s: required, but omitempty", name, f.name)
			}
		}
		for p := range props {
			if !slices.ContainsFunc(fields, func(f jsonField) bool { return f.name == p }) {
				t.Errorf("%s: property %q is no JSON field of the Go type", name, p)
			}
		}
		if inRequests[name] && s["additionalProperties"] != false {
			t.Errorf("%s is a request body: additionalProperties must be false (the API refuses unknown fields)", name)
		}
	}
}

// checkFieldSchema checks that schema s fits the Go type tp of a field.
func checkFieldSchema(t *testing.T, at string, tp reflect.Type, s map[string]any) {
	t.Helper()
	types := schemaTypes(s)
	if slices.Contains(types, "null") {
		if k := tp.Kind(); k != reflect.Pointer && k != reflect.Slice && k != reflect.Map {
			t.Errorf("%s: null allowed, but %s is never null", at, tp)
		}
		types = slices.DeleteFunc(slices.Clone(types), func(s string) bool { return s == "null" })
	}
	if tp.Kind() == reflect.Pointer {
		tp = tp.Elem()
	}
	if tp == reflect.TypeFor[time.Time]() {
		if !slices.Equal(types, []string{"string"}) || s["format"] != "date-time" {
			t.Errorf("%s: %s wants type string, format date-time; got %v %v", at, tp, types, s["format"])
		}
		return
	}
	want := ""
	switch tp.Kind() {
	case reflect.Struct:
		if ref, _ := s["$ref"].(string); ref != "#/components/schemas/"+tp.Name() || apiSchemaTypes[tp.Name()] == nil {
			t.Errorf("%s: %s wants $ref to its schema, got %v", at, tp, s["$ref"])
		}
		return
	case reflect.String:
		want = "string"
	case reflect.Bool:
		want = "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		want = "integer"
	case reflect.Float32, reflect.Float64:
		want = "number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want = "integer"
		if m, ok := s["minimum"].(float64); !ok || m < 0 {
			t.Errorf("%s: %s is unsigned: minimum must be ≥ 0", at, tp)
		}
	case reflect.Slice:
		want = "array"
		if items := obj(s, "items"); items == nil {
			t.Errorf("%s: array without items", at)
		} else {
			checkFieldSchema(t, at+"[]", tp.Elem(), items)
		}
	case reflect.Map:
		want = "object"
		if tp.Key().Kind() != reflect.String {
			t.Errorf("%s: map key %s", at, tp.Key())
		}
		if ap := obj(s, "additionalProperties"); ap == nil {
			t.Errorf("%s: map without additionalProperties", at)
		} else {
			checkFieldSchema(t, at+"{}", tp.Elem(), ap)
		}
	default:
		t.Errorf("%s: no rule for %s", at, tp)
		return
	}
	if !slices.Equal(types, []string{want}) {
		t.Errorf("%s: %s wants type %s, got %v", at, tp, want, s["type"])
	}
}

// validateJSON checks v against schema s of doc: the subset of JSON Schema the document uses
// (type, properties, required, additionalProperties, items, enum, $ref).
func validateJSON(t *testing.T, doc map[string]any, s map[string]any, v any, at string) {
	t.Helper()
	s = deref(t, doc, s)
	if types := schemaTypes(s); types != nil {
		got := "object"
		switch v := v.(type) {
		case nil:
			got = "null"
		case bool:
			got = "boolean"
		case string:
			got = "string"
		case float64:
			got = "number"
			if v == float64(int64(v)) && slices.Contains(types, "integer") {
				got = "integer"
			}
		case []any:
			got = "array"
		}
		if !slices.Contains(types, got) {
			t.Errorf("%s: %s, want %v", at, got, types)
			return
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		t.Errorf("%s: %v is not one of %v", at, v, enum)
	}
	switch v := v.(type) {
	case map[string]any:
		props := obj(s, "properties")
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := v[r.(string)]; !ok {
				t.Errorf("%s: required %q missing", at, r)
			}
		}
		for k, e := range v {
			switch ps := props[k]; {
			case ps != nil:
				validateJSON(t, doc, ps.(map[string]any), e, at+"."+k)
			case s["additionalProperties"] == false || (props != nil && s["additionalProperties"] == nil):
				t.Errorf("%s: %q is not in the schema", at, k)
			default:
				if ap := obj(s, "additionalProperties"); ap != nil {
					validateJSON(t, doc, ap, e, at+"."+k)
				}
			}
		}
	case []any:
		if items := obj(s, "items"); items != nil {
			for i, e := range v {
				validateJSON(t, doc, items, e, fmt.Sprintf("%s[%d]", at, i))
			}
		}
	}
}

// TestOpenAPIServed: both the web address (without a token) and the control socket serve the
// document as application/json; everything else under /api/ on the web address still needs a
// token; and the live API's answers, successful or not, are documented with those codes and
// match their schemas.
func TestOpenAPIServed(t *testing.T) {
	e := newAuthEnv(t, nil)
	get := func(h http.Handler, target string, header http.Header) *http.Response {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.RemoteAddr = "127.0.0.1:1234"
		maps.Copy(req.Header, header)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Result()
	}
	web, ctl := e.srv.Handler(), e.srv.ControlHandler()
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"web address", web}, {"control socket", ctl}} {
		resp := get(c.h, "http://localhost/api/v1/openapi.json", nil)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(body, openAPIDocument) {
			t.Errorf("%s: GET /api/v1/openapi.json: %d %s, %d bytes", c.name, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		etag := resp.Header.Get("ETag")
		if resp := get(c.h, "http://localhost/api/v1/openapi.json", http.Header{"If-None-Match": {etag}}); etag == "" || resp.StatusCode != http.StatusNotModified {
			t.Errorf("%s: revalidating with ETag %q: %d", c.name, etag, resp.StatusCode)
		}
	}
	resp := get(web, "http://localhost/api/v1/openapi.json", nil)
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Content-Security-Policy") == "" {
		t.Error("web address: the document is served without the security headers")
	}
	if resp := get(web, "http://localhost/api/v1/status", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("web address: GET /api/v1/status without a token: %d, want 401", resp.StatusCode)
	}

	// The live API against the document.
	doc := openAPIDoc(t)
	byRoute := map[string]openAPIOp{}
	for _, o := range openAPIOps(t, doc) {
		byRoute[o.route] = o
	}
	e.addTenant("acme")
	e.addTenant("other")
	viewer := e.addToken("viewer", "viewer", "", time.Time{})
	scoped := e.addToken("acme-admin", "tenant_admin", "acme", time.Time{})
	owner := e.addToken("root", "owner", "", time.Time{})
	type call struct {
		method, path, body, token string
		want                      int
	}
	calls := []call{
		{"GET", "/api/v1/status", "", "", 200},
		{"GET", "/api/v1/tenants", "", "", 200},
		{"POST", "/api/v1/tenants", `{"name":"beta"}`, "", 201},
		{"POST", "/api/v1/tenants", `{"name":"beta"}`, "", 409},
		{"POST", "/api/v1/tenants", `{"name":"Bad!"}`, "", 400},
		{"POST", "/api/v1/tenants", `{"nom":"x"}`, "", 400},
		{"PATCH", "/api/v1/tenants/acme", `{"split_tunnel":true}`, "", 200},
		{"PATCH", "/api/v1/tenants/acme", `{"domain":"corp.example.com"}`, "", 200},
		{"PATCH", "/api/v1/tenants/beta", `{"domain":"corp.example.com"}`, "", 409},
		{"PATCH", "/api/v1/tenants/beta", `{"domain":"not a domain"}`, "", 400},
		{"PATCH", "/api/v1/tenants/beta", `{"domain":""}`, "", 200},
		{"PATCH", "/api/v1/tenants/acme/limits", `{"max_flows_per_peer":100,"max_flows":1000}`, "", 200},
		{"PATCH", "/api/v1/tenants/acme/limits", `{"max_flows":0}`, "", 200},
		{"PATCH", "/api/v1/tenants/acme/limits", `{"max_flows":2000000}`, "", 400},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"laptop","groups":["eng"]}`, "", 201},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"office","site":"office","site_prefixes":["10.20.0.0/16"]}`, "", 201},
		{"POST", "/api/v1/tenants/nope/peers", `{"name":"x"}`, "", 404},
		{"GET", "/api/v1/peers", "", "", 200},
		{"GET", "/api/v1/peers?tenant=acme", "", "", 200},
		{"GET", "/api/v1/tenants/acme/peers/laptop", "", "", 200},
		{"GET", "/api/v1/tenants/acme/peers/laptop/config", "", "", 200},
		{"GET", "/api/v1/tenants/acme/traffic", "", "", 200},
		{"GET", "/api/v1/tenants/acme/traffic?range=7d", "", "", 200},
		{"GET", "/api/v1/tenants/acme/traffic?range=48h", "", "", 400},
		{"GET", "/api/v1/tenants/nope/traffic", "", "", 404},
		{"GET", "/api/v1/tenants/acme/peers/laptop/traffic?range=1h", "", "", 200},
		{"GET", "/api/v1/tenants/acme/peers/laptop/traffic?range=48h", "", "", 200},
		{"GET", "/api/v1/tenants/acme/peers/laptop/traffic?range=7d", "", "", 400},
		{"GET", "/api/v1/tenants/acme/peers/nope/traffic", "", "", 404},
		{"POST", "/api/v1/tenants/acme/peers/laptop/disable", "", "", 200},
		{"POST", "/api/v1/tenants/acme/peers/laptop/enable", "", "", 200},
		{"PATCH", "/api/v1/tenants/acme/peers/laptop", `{"groups":["eng","ops"]}`, "", 200},
		{"PUT", "/api/v1/tenants/acme/peers/laptop/expiry", `{"expires_at":"2099-01-01T00:00:00Z"}`, "", 200},
		{"POST", "/api/v1/tenants/acme/peers/laptop/links", `{"valid_seconds":3600}`, "", 201},
		{"POST", "/api/v1/tenants/acme/peers/laptop/rename", `{"name":"laptop2"}`, "", 200},
		{"GET", "/api/v1/tenants/acme/policy", "", "", 200},
		{"PUT", "/api/v1/tenants/acme/policy", "default deny\nallow group:eng -> any tcp 443\n", "", 200},
		{"PUT", "/api/v1/tenants/acme/policy", "allow nonsense\n", "", 400},
		{"PUT", "/api/v1/tenants/acme/policy", "default deny\nallow group:later -> any\n", "", 200},
		{"POST", "/api/v1/tenants/acme/peers/laptop2/rotate", "", "", 200},
		{"POST", "/api/v1/tenants/acme/peers/laptop2/rotate", `{"public_key":"xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="}`, "", 200},
		{"POST", "/api/v1/tenants/acme/peers/laptop2/rotate", "", "", 400},
		{"POST", "/api/v1/tenants/acme/peers/laptop2/rotate", `{"public_key":"nope"}`, "", 400},
		{"POST", "/api/v1/tenants/acme/peers/nope/rotate", "", "", 404},
		{"POST", "/api/v1/tenants/acme/routes", `{"prefix":"10.20.0.0/16","via":"site:office"}`, "", 201},
		{"GET", "/api/v1/tenants/acme/routes", "", "", 200},
		{"DELETE", "/api/v1/tenants/acme/routes?prefix=" + url.QueryEscape("10.20.0.0/16"), "", "", 204},
		{"POST", "/api/v1/admins", `{"name":"alice","role":"viewer"}`, "", 201},
		{"GET", "/api/v1/admins", "", "", 200},
		{"PATCH", "/api/v1/admins/alice", `{"disabled":true}`, "", 200},
		{"DELETE", "/api/v1/admins/alice/totp", "", "", 200},
		{"PUT", "/api/v1/admins/alice/password", `{}`, "", 200},
		{"DELETE", "/api/v1/admins/alice", "", "", 204},
		{"POST", "/api/v1/tokens", `{"name":"ci","role":"tenant_admin","tenant":"acme","expires_at":"2099-01-01T00:00:00Z"}`, "", 201},
		{"GET", "/api/v1/tokens", "", "", 200},
		{"DELETE", "/api/v1/tokens/ci", "", "", 204},
		{"GET", "/api/v1/audit?limit=5", "", "", 200},
		{"GET", "/api/v1/audit?limit=x", "", "", 400},
		{"GET", "/api/v1/events?limit=5&kind=node", "", "", 200},
		{"GET", "/api/v1/events?since=yesterday", "", "", 400},
		{"GET", "/api/v1/events/webhook", "", "", 404},
		{"PUT", "/api/v1/events/webhook", `{"url":"https://alerts.example.com/popgate"}`, "", 200},
		{"PUT", "/api/v1/events/webhook", `{"url":"ftp://alerts.example.com/"}`, "", 400},
		{"GET", "/api/v1/events/webhook", "", "", 200},
		{"DELETE", "/api/v1/events/webhook", "", "", 204},
		{"DELETE", "/api/v1/events/webhook", "", "", 404},
		{"POST", "/api/v1/regions", `{"name":"fra","endpoint":"vpn-fra.example.com:51820"}`, "", 201},
		{"POST", "/api/v1/regions", `{"name":"fra","endpoint":"vpn-fra.example.com:51820"}`, "", 409},
		{"POST", "/api/v1/regions", `{"name":"Fra!","endpoint":"x:1"}`, "", 400},
		{"POST", "/api/v1/regions", `{"name":"ams","endpoint":"nohost"}`, "", 400},
		{"PATCH", "/api/v1/regions/fra", `{"endpoint":"fra.example.com:443"}`, "", 200},
		{"PATCH", "/api/v1/regions/local", `{"endpoint":"x.example.com:1"}`, "", 400},
		{"PATCH", "/api/v1/regions/nope", `{"endpoint":"x.example.com:1"}`, "", 404},
		{"PATCH", "/api/v1/tenants/acme", `{"regions":["fra"]}`, "", 200},
		{"PATCH", "/api/v1/tenants/acme", `{"regions":["nope"]}`, "", 404},
		{"GET", "/api/v1/regions", "", "", 200},
		{"GET", "/api/v1/tenants/acme/peers/laptop2/config?region=fra", "", "", 200},
		{"GET", "/api/v1/tenants/acme/peers/laptop2/config?region=local", "", "", 400},
		{"GET", "/api/v1/tenants/acme/peers/laptop2/config?region=nope", "", "", 404},
		{"DELETE", "/api/v1/regions/fra", "", "", 400},
		{"DELETE", "/api/v1/regions/local", "", "", 400},
		{"PATCH", "/api/v1/tenants/acme", `{"regions":["all"]}`, "", 200},
		{"DELETE", "/api/v1/regions/fra", "", "", 204},
		{"DELETE", "/api/v1/regions/fra", "", "", 404},
		{"DELETE", "/api/v1/tenants/acme/peers/office", "", "", 204},
		{"DELETE", "/api/v1/tenants/beta", "", "", 204},
		{"GET", "/api/v1/tenants/acme/dns/upstreams", "", "", 200},
		{"PUT", "/api/v1/tenants/acme/dns/upstreams", `{"upstreams":["tls://dns.quad9.net@9.9.9.9","149.112.112.112"]}`, "", 200},
		{"PUT", "/api/v1/tenants/acme/dns/upstreams", `{"upstreams":["10.0.0.53"]}`, "", 400},
		{"PUT", "/api/v1/tenants/acme/dns/upstreams", `{"upstreams":[]}`, "", 400},
		{"PUT", "/api/v1/tenants/nope/dns/upstreams", `{"upstreams":["9.9.9.9"]}`, "", 404},
		{"GET", "/api/v1/tenants/acme/dns/upstreams", "", "", 200},
		{"DELETE", "/api/v1/tenants/acme/dns/upstreams", "", "", 200},
		{"GET", "/api/v1/tenants/acme/dns/log", "", "", 200},
		{"POST", "/api/v1/tenants/acme/dns/log/enable", `{"keep_seconds":7200}`, "", 200},
		{"POST", "/api/v1/tenants/acme/dns/log/enable", `{"keep_seconds":60}`, "", 400},
		{"POST", "/api/v1/tenants/acme/dns/log/enable", "", "", 200},
		{"POST", "/api/v1/tenants/nope/dns/log/enable", "", "", 404},
		{"GET", "/api/v1/tenants/acme/dns/log?limit=5&peer=laptop2", "", "", 200},
		{"GET", "/api/v1/tenants/acme/dns/log?limit=x", "", "", 400},
		{"GET", "/api/v1/tenants/nope/dns/log", "", "", 404},
		{"POST", "/api/v1/tenants/acme/dns/log/disable", "", "", 200},
		// The web address, with tokens.
		{"GET", "/api/v1/status", "", "-", 401},
		{"GET", "/api/v1/status", "", scoped, 200},
		{"GET", "/api/v1/tenants", "", scoped, 200},
		{"GET", "/api/v1/peers?tenant=other", "", scoped, 403},
		{"GET", "/api/v1/audit", "", scoped, 200},
		{"GET", "/api/v1/events", "", scoped, 200},
		{"GET", "/api/v1/events?tenant=other", "", scoped, 403},
		{"GET", "/api/v1/events/webhook", "", scoped, 403},
		{"PUT", "/api/v1/events/webhook", `{"url":"https://x.example/"}`, viewer, 403},
		{"GET", "/api/v1/tenants/other/routes", "", scoped, 403},
		{"GET", "/api/v1/tenants/other/traffic", "", scoped, 403},
		{"GET", "/api/v1/tenants/acme/traffic", "", scoped, 200},
		{"GET", "/api/v1/regions", "", scoped, 200},
		{"POST", "/api/v1/regions", `{"name":"par","endpoint":"x.example.com:1"}`, scoped, 403},
		{"PATCH", "/api/v1/tenants/acme", `{"regions":["local"]}`, scoped, 403},
		{"PATCH", "/api/v1/tenants/acme", `{"split_tunnel":false}`, scoped, 200},
		{"POST", "/api/v1/tenants", `{"name":"gamma"}`, viewer, 403},
		{"POST", "/api/v1/tenants/acme/peers/laptop2/disable", "", viewer, 403},
		{"GET", "/api/v1/tenants/acme/peers/laptop2", "", owner, 200},
		{"GET", "/api/v1/tenants/other/dns/upstreams", "", scoped, 403},
		{"PUT", "/api/v1/tenants/other/dns/upstreams", `{"upstreams":["9.9.9.9"]}`, scoped, 403},
		{"PUT", "/api/v1/tenants/acme/dns/upstreams", `{"upstreams":["9.9.9.9"]}`, viewer, 403},
		{"PUT", "/api/v1/tenants/acme/dns/upstreams", `{"upstreams":["9.9.9.9"]}`, scoped, 200},
		{"GET", "/api/v1/tenants/acme/dns/upstreams", "", scoped, 200},
		{"GET", "/api/v1/tenants/other/dns/log", "", scoped, 403},
		{"POST", "/api/v1/tenants/other/dns/log/enable", "", scoped, 403},
		{"POST", "/api/v1/tenants/acme/dns/log/enable", "", viewer, 403},
		{"POST", "/api/v1/tenants/acme/dns/log/enable", "", scoped, 200},
		{"GET", "/api/v1/tenants/acme/dns/log", "", scoped, 200},
		{"POST", "/api/v1/tenants/acme/dns/log/disable", "", scoped, 200},
	}
	for _, c := range calls {
		req := httptest.NewRequest(c.method, "http://localhost"+c.path, strings.NewReader(c.body))
		req.RemoteAddr = "127.0.0.1:1234"
		h := ctl
		if c.token != "" {
			h = web
			if c.token != "-" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
		}
		ctype := "application/json"
		if strings.HasSuffix(c.path, "/policy") {
			ctype = "text/plain"
		}
		if c.body != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		name := c.method + " " + c.path
		if rec.Code != c.want {
			t.Errorf("%s: %d %s, want %d", name, rec.Code, rec.Body, c.want)
			continue
		}
		_, pattern := e.srv.api.mux.Handler(req)
		o, ok := byRoute[pattern]
		if !ok {
			t.Errorf("%s: route %q is not documented", name, pattern)
			continue
		}
		r := obj(o.op, "responses")[strconv.Itoa(rec.Code)]
		if r == nil {
			t.Errorf("%s: answer %d is not documented", name, rec.Code)
			continue
		}
		content := obj(deref(t, doc, r), "content")
		if len(content) == 0 {
			if rec.Body.Len() != 0 {
				t.Errorf("%s: %d has a body, the document says none", name, rec.Code)
			}
			continue
		}
		got, _, _ := strings.Cut(rec.Header().Get("Content-Type"), ";")
		media := obj(content, got)
		if media == nil {
			t.Errorf("%s: answer %d is %s, the document says %v", name, rec.Code, got, slices.Collect(maps.Keys(content)))
			continue
		}
		if got == "application/json" {
			var v any
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			validateJSON(t, doc, obj(media, "schema"), v, name)
		}
	}
}
