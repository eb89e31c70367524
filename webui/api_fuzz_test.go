package webui

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// maxErrorLen bounds what an answer to bad input may say: whatever the input, an error quotes
// a bounded part of it.
const maxErrorLen = 512

// checkErrorText fails t unless msg is an error a client can show: not empty, one line, and
// at most maxErrorLen bytes.
func checkErrorText(t *testing.T, what, msg string) {
	t.Helper()
	if strings.TrimSpace(msg) == "" || strings.ContainsAny(msg, "\r\n") || len(msg) > maxErrorLen {
		t.Fatalf("%s: error of %d bytes is not one short line: %.600q", what, len(msg), msg)
	}
}

// decodeTargets are the request bodies of the API: what decode fills.
var decodeTargets = []func() any{
	func() any { return new(APINewTenant) },
	func() any { return new(APINewPeer) },
	func() any { return new(APIPeerRotate) },
	func() any { return new(APIPeerUpdate) },
	func() any { return new(APITenantUpdate) },
	func() any { return new(APITenantLimits) },
	func() any { return new(APIRoute) },
	func() any { return new(APINewAdmin) },
	func() any { return new(APIAdminUpdate) },
	func() any { return new(APIAdminPassword) },
	func() any { return new(APINewToken) },
	func() any { return new(APIPeerRename) },
	func() any { return new(APIPeerExpiry) },
	func() any { return new(APINewDownloadLink) },
}

// decodeBody runs decode on body as wrapLimit sets it up: at most limit bytes.
func decodeBody(body []byte, limit int64, v any) error {
	r := httptest.NewRequest(http.MethodPost, "/api/v1/x", bytes.NewReader(body))
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, limit)
	return decode(r, v)
}

// FuzzDecode: the API's body decoder takes exactly one JSON value within the route's limit.
// What it accepts is valid JSON no longer than the limit, and re-encoding it gives a body it
// accepts as the same value (a canonical form); what it refuses is a 400, or a 413 only when
// the body is over the limit, with a short one-line message.
func FuzzDecode(f *testing.F) {
	for _, s := range []struct {
		body   string
		target uint8
		limit  uint16
	}{
		{`{"name":"acme"}`, 0, 0},
		{`{"name":"laptop","groups":["eng","ops"],"site":"office","site_prefixes":["10.10.0.0/24"]}`, 1, 0},
		{`{"groups":null,"site":"x"}`, 3, 0},
		{`{"max_flows_per_peer":10,"max_flows":1e3}`, 5, 0},
		{`{"prefix":"10.0.0.0/8","via":"internet"} `, 6, 0},
		{`{"name":"a"} {"name":"b"}`, 0, 0},
		{`{"name":"a"}x`, 0, 0},
		{`{"nam":"a"}`, 0, 0},
		{`{"name":"` + strings.Repeat("x", 300) + `"}`, 0, 100},
		{`{"` + strings.Repeat("y", 2000) + `":1}`, 0, 0},
		{`{"expires_at":"9999-12-31T23:00:00-05:00"}`, 12, 0},
		{`{"role":"viewer","disabled":true,"tenant":null}`, 8, 0},
		{`{"valid_seconds":-1}`, 13, 0},
		{`null`, 0, 0},
		{`[{"name":"a"}]`, 0, 0},
		{"{\"name\":\"\xff\"}", 0, 0},
		{`{"name":"a"`, 0, 0},
		{``, 0, 0},
	} {
		f.Add([]byte(s.body), s.target, s.limit)
	}
	f.Fuzz(func(t *testing.T, body []byte, target uint8, limit16 uint16) {
		limit := int64(maxBody)
		if limit16 != 0 {
			limit = int64(limit16) // a small limit, to reach it with small bodies
		}
		newV := decodeTargets[int(target)%len(decodeTargets)]
		v := newV()
		err := decodeBody(body, limit, v)
		if err != nil {
			bad, large := errors.Is(err, errBadRequest), errors.Is(err, errTooLarge)
			if bad == large {
				t.Fatalf("%q: error %v is neither a 400 nor a 413", body, err)
			}
			if large && int64(len(body)) <= limit {
				t.Fatalf("%q (%d bytes, limit %d): 413 %v", body, len(body), limit, err)
			}
			checkErrorText(t, "decode", err.Error())
			return
		}
		if int64(len(body)) > limit {
			t.Fatalf("accepted %d bytes over a limit of %d", len(body), limit)
		}
		if !json.Valid(body) {
			t.Fatalf("accepted %q, which is not one JSON value", body)
		}
		again, err := json.Marshal(v)
		if err != nil {
			// A value the server cannot print back may be refused later, but never by a
			// panic; times beyond year 9999 are the store's to refuse (see SetPeerExpiry).
			return
		}
		v2 := newV()
		if err := decodeBody(again, int64(maxBody), v2); err != nil {
			t.Fatalf("%q decoded to %+v, whose encoding %s is refused: %v", body, v, again, err)
		}
		if third, _ := json.Marshal(v2); !bytes.Equal(third, again) {
			t.Fatalf("%q: encoding %s decodes to %s", body, again, third)
		}
	})
}

// splitAuditQuery is q's page and window, and q without them.
func splitAuditQuery(q store.AuditQuery) (logPage, store.AuditQuery) {
	p := logPage{Limit: q.Limit, Offset: q.Offset, Since: q.Since, Until: q.Until}
	q.Limit, q.Offset, q.Since, q.Until = 0, 0, time.Time{}, time.Time{}
	return p, q
}

// printAuditQuery is what a client sends for q: the inverse of auditQuery.
func printAuditQuery(q store.AuditQuery) url.Values {
	p, _ := splitAuditQuery(q)
	return printLogQuery(p, map[string]string{"tenant": q.Tenant, "actor": q.Actor, "action": q.Action})
}

// printLogQuery is what a client sends for a log's list of page p and the other filters (""
// not sent): the inverse of auditQuery and eventQuery.
func printLogQuery(p logPage, filters map[string]string) url.Values {
	v := url.Values{}
	for k, s := range filters {
		if s != "" {
			v.Set(k, s)
		}
	}
	if p.Limit != 0 {
		v.Set("limit", strconv.Itoa(p.Limit))
	}
	if p.Offset != 0 {
		v.Set("offset", strconv.Itoa(p.Offset))
	}
	if !p.Since.IsZero() {
		v.Set("since", p.Since.Format(time.RFC3339Nano))
	}
	if !p.Until.IsZero() {
		v.Set("until", p.Until.Format(time.RFC3339Nano))
	}
	return v
}

// checkLogQuery is FuzzAuditQuery's and FuzzEventQuery's check of the filters raw: parse
// (named name) gives a query Q whose limit and offset are within 0 and maxLimit and that print
// (its inverse) writes back to filters giving the same query, or a 400 that names the filter
// in a short line. split is a query's page and window, and the query without them.
func checkLogQuery[Q any](t *testing.T, raw, name string, maxLimit int, parse func(url.Values) (Q, error), split func(Q) (logPage, Q), print func(Q) url.Values) {
	t.Helper()
	v, err := url.ParseQuery(raw)
	if err != nil {
		return
	}
	q, err := parse(v)
	if err != nil {
		if !errors.Is(err, errBadRequest) {
			t.Fatalf("%q: error %v is not a 400", raw, err)
		}
		checkErrorText(t, name, err.Error())
		named := false
		for _, k := range []string{"limit", "offset", "since", "until"} {
			named = named || strings.Contains(err.Error(), k+"=")
		}
		if !named {
			t.Fatalf("%q: error %q names no filter", raw, err)
		}
		return
	}
	p, rest := split(q)
	if p.Limit < 0 || p.Limit > maxLimit || p.Offset < 0 {
		t.Fatalf("%q: limit %d offset %d out of bounds", raw, p.Limit, p.Offset)
	}
	q2, err := parse(print(q))
	if err != nil {
		t.Fatalf("%q: query %+v prints as %q, which is refused: %v", raw, q, print(q).Encode(), err)
	}
	p2, rest2 := split(q2)
	if !p.Since.Equal(p2.Since) || !p.Until.Equal(p2.Until) {
		t.Fatalf("%q: times %v %v print back as %v %v", raw, p.Since, p.Until, p2.Since, p2.Until)
	}
	p.Since, p.Until, p2.Since, p2.Until = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if p != p2 || !reflect.DeepEqual(rest, rest2) {
		t.Fatalf("%q: %+v prints back as %+v", raw, q, q2)
	}
}

// FuzzAuditQuery: the filters of GET /api/v1/audit give a query within the store's bounds
// that prints back to filters giving the same query, or a 400 that names the filter in a
// short line.
func FuzzAuditQuery(f *testing.F) {
	for _, s := range []string{
		"", "tenant=acme&actor=alice&action=peer.&limit=1000&offset=50",
		"since=2026-11-24T09:30:00Z&until=2026-11-25T09:30:00.123456789%2B02:00",
		"limit=1001", "limit=-1", "offset=9223372036854775808", "limit=+5", "limit=0x10",
		"since=2026-13-01T00:00:00Z", "until=yesterday", "since=0000-01-01T00:00:00Z",
		"until=9999-12-31T23:59:59-23:59", "action=%ff%00", "limit=" + strings.Repeat("9", 500),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		checkLogQuery(t, raw, "auditQuery", store.MaxAuditPage, auditQuery, splitAuditQuery, printAuditQuery)
	})
}

// FuzzParsePrefixes: a prefix field of the API gives the prefixes as written (space around
// them aside), or a 400 that quotes a bounded part of the bad one.
func FuzzParsePrefixes(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", " fd00:1::/64 ", "10.1.2.3/24", "banana", "::ffff:10.0.0.0/104", "1.2.3.4/33", strings.Repeat("1", 5000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := parsePrefixes("site_prefixes", []string{"10.0.0.0/8", s})
		if err != nil {
			if !errors.Is(err, errBadRequest) || !strings.Contains(err.Error(), "site_prefixes") {
				t.Fatalf("%q: error %v is not a 400 naming the field", s, err)
			}
			checkErrorText(t, "parsePrefixes", err.Error())
			return
		}
		want, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil || len(ps) != 2 || ps[1] != want {
			t.Fatalf("%q gave %v", s, ps)
		}
	})
}

// FuzzAPI: whatever request reaches the API — any method, path, query and body — the answer
// is never a 500, a JSON answer is whole JSON (what one request stored, the next can list),
// and a refusal is JSON whose error is one short line. The node starts with
// tenant acme and its peer laptop, so that paths reach the handlers; what the fuzzer adds
// stays.
func FuzzAPI(f *testing.F) {
	for _, s := range []struct {
		method     uint8
		path, body string
	}{
		{0, "status", ""},
		{0, "peers?tenant=acme", ""},
		{1, "tenants", `{"name":"bravo"}`},
		{1, "tenants/acme/peers", `{"name":"phone","groups":["eng"]}`},
		{1, "tenants/acme/peers", `{"name":"x","public_key":"` + strings.Repeat("A", 100) + `"}`},
		{3, "tenants/acme/peers/laptop", `{"site":"office","site_prefixes":["10.10.0.0/24"]}`},
		{3, "tenants/acme/limits", `{"max_flows":-1}`},
		{2, "tenants/acme/policy", "allow tcp from group:eng to 10.0.0.0/8 port 22\n"},
		{1, "tenants/acme/routes", `{"prefix":"10.20.0.0/16","via":"site:nowhere"}`},
		{4, "tenants/acme/routes?prefix=10.20.0.0%2F16", ""},
		{0, "audit?since=yesterday", ""},
		{2, "tenants/acme/peers/laptop/expiry", `{"expires_at":"9999-12-31T23:00:00-05:00"}`},
		{0, "tenants/acme/peers/laptop", ""},
		{1, "tenants/acme/peers/laptop/links", `{"valid_seconds":59}`},
		{1, "tokens", `{"name":"ci","role":"owner","tenant":"acme"}`},
		{3, "admins/nobody", `{"role":"king"}`},
		{0, "tenants/" + strings.Repeat("a", 3000) + "/peers/laptop", ""},
		{0, strings.Repeat("x", 3000), ""},
		{4, "tenants/acme/peers/%ff", ""},
	} {
		f.Add(s.method, s.path, []byte(s.body))
	}
	node := startTestNode(f)
	ctrl := node.Ctrl
	if _, err := ctrl.AddTenant(setup(), "acme"); err != nil {
		f.Fatal(err)
	}
	if _, _, err := ctrl.AddPeer(setup(), control.AddPeerRequest{Tenant: "acme", Name: "laptop"}); err != nil {
		f.Fatal(err)
	}
	api := NewAPI(ctrl, node.Store, slog.New(slog.DiscardHandler))
	methods := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
	f.Fuzz(func(t *testing.T, method uint8, path string, body []byte) {
		if strings.HasPrefix(path, "admins") && len(body) > 0 || strings.Contains(path, "password") {
			return // a password costs a slow hash: the admin routes' JSON is fuzzed by FuzzDecode
		}
		req, err := http.NewRequest(methods[int(method)%len(methods)], "http://popgate.test/api/v1/"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		req = req.WithContext(store.WithActor(req.Context(), store.Actor{Name: "fuzz"}))
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		what := req.Method + " " + clipText(path, 100)
		if w.Code >= 500 {
			t.Fatalf("%s %q: %d %s", what, body, w.Code, w.Body)
		}
		if w.Code < 400 {
			if strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") && !json.Valid(w.Body.Bytes()) {
				t.Fatalf("%s: %d with a body that is not JSON: %.300q", what, w.Code, w.Body)
			}
			return
		}
		var e APIError
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatalf("%s: %d with a body that is not an APIError: %v", what, w.Code, err)
		}
		checkErrorText(t, what, e.Error)
	})
}

// splitEventQuery is q's page and window, and q without them.
func splitEventQuery(q store.EventQuery) (logPage, store.EventQuery) {
	p := logPage{Limit: q.Limit, Offset: q.Offset, Since: q.Since, Until: q.Until}
	q.Limit, q.Offset, q.Since, q.Until = 0, 0, time.Time{}, time.Time{}
	return p, q
}

// printEventQuery is what a client sends for q: the inverse of eventQuery.
func printEventQuery(q store.EventQuery) url.Values {
	p, _ := splitEventQuery(q)
	return printLogQuery(p, map[string]string{"tenant": q.Tenant, "kind": q.Kind, "node": q.Node})
}

// FuzzEventQuery: the filters of GET /api/v1/events give a query within the store's bounds
// that prints back to filters giving the same query, or a 400 that names the filter in a
// short line.
func FuzzEventQuery(f *testing.F) {
	for _, s := range []string{
		"", "tenant=acme&kind=node.&node=p1&limit=1000&offset=50",
		"since=2026-11-24T09:30:00Z&until=2026-11-25T09:30:00.123456789%2B02:00",
		"limit=1001", "limit=-1", "offset=9223372036854775808", "kind=%ff%00", "until=yesterday",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		checkLogQuery(t, raw, "eventQuery", store.MaxEventPage, eventQuery, splitEventQuery, printEventQuery)
	})
}
