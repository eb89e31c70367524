package webui

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// TestUINetwork: the Network page shows the regions, the PoPs and each check with its chart
// to owners; a tenant's admin sees its own tenant's checks only, and nothing of the
// operator's or the nodes; nothing on it needs an inline style or script.
func TestUINetwork(t *testing.T) {
	h := newUIHarness(t)
	ctx := setup()
	if _, err := h.ctrl.AddRegion(ctx, "fra", "vpn-fra.example.com:51820"); err != nil {
		t.Fatal(err)
	}
	// From region fra, which has no PoP: the harness's node runs none of them (it would ask
	// the host's resolvers), the results are the test's.
	var ids []int64
	for _, req := range []control.AddCheckRequest{
		{Name: "resolver", Kind: store.CheckDNS, Target: "www.example.com", From: "region:fra"},
		{Tenant: "acme", Name: "site", Kind: store.CheckHTTP, Target: "https://www.acme.example/", From: "region:fra"},
		{Tenant: "bravo", Name: "shop", Kind: store.CheckHTTP, Target: "https://shop.bravo.example/", From: "region:fra"},
	} {
		c, err := h.ctrl.AddCheck(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	now := time.Now().Truncate(time.Minute)
	var rs []store.CheckResult
	for i := range 120 { // two hours of the resolver, failing for ten minutes an hour ago
		r := store.CheckResult{Check: ids[0], Node: 1, Minute: now.Add(-time.Duration(i) * time.Minute), OK: 1,
			LatencyP50: time.Duration(10+i%7) * time.Millisecond, LatencyMax: 40 * time.Millisecond, Detail: "192.0.2.10 via 127.0.0.1:53"}
		if i >= 60 && i < 70 {
			r.OK, r.Failed, r.LatencyP50, r.LatencyMax, r.Error, r.Detail = 0, 1, 0, 0, "no answer in time", ""
		}
		rs = append(rs, r)
	}
	rs = append(rs, store.CheckResult{Check: ids[1], Node: 1, Minute: now, Failed: 1, Error: "status 503, expected 200", Detail: "503 Service Unavailable"})
	if err := h.store.RecordCheckResults(ctx, rs); err != nil {
		t.Fatal(err)
	}

	body := h.check(owner, "GET", "/network", nil, http.StatusOK, "<title>Network · popgate</title>", `aria-current="page">Network<`,
		">fra<", "vpn-fra.example.com:51820", "not checked", "No PoP of another region with a backbone checks it",
		"PoPs", "controller", "Reported 24 h", `<td class="nowrap">100 %</td>`, // results in every minute since it started
		"resolver", "passing", "192.0.2.10 via 127.0.0.1:53 (from controller)", "Uptime 24 h <strong>91.67 %</strong>",
		`<svg viewBox="0 0 288 60"`, `class="check-chart-line" d="M`, `class="check-chart-fail all"`, `role="img"`,
		"Last 24 hours: 110 runs passed, 10 failed (91.67 %).", "Failures in ",
		"site", "acme", "failing", "From controller: status 503, expected 200", "shop", "bravo", "No node runs it", "No result in the last 24 hours.")
	for _, bad := range []string{"style=", "<script>", "onclick"} {
		if strings.Contains(body, bad) {
			t.Errorf("the page holds %q", bad)
		}
	}
	if strings.Count(body, "<svg") != 2 {
		t.Errorf("%d charts, want 2 (resolver and site; bravo's shop has no result, the regions are not checked)", strings.Count(body, "<svg"))
	}

	// A tenant's admin: its own check, nothing of the operator's, other tenants' or the
	// nodes'.
	body = h.check(acmeAdmin, "GET", "/network", nil, http.StatusOK, "Your tenant", "site", "status 503", ">fra<")
	for _, hidden := range []string{"resolver", "shop", "bravo", "Reported 24 h", "Endpoint answers", "Backbone"} {
		if strings.Contains(body, hidden) {
			t.Errorf("acme's admin sees %q", hidden)
		}
	}
	// A viewer of the whole installation sees every check but not the nodes.
	body = h.check(viewer, "GET", "/network", nil, http.StatusOK, "resolver", "site", "shop", "Endpoint answers")
	if strings.Contains(body, "Reported 24 h") {
		t.Error("a viewer sees the PoPs")
	}
}

func TestBuildChart(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	start := now.Add(-chartSpan)
	ms := time.Millisecond
	bin := func(i, ok, failed int, lat time.Duration) store.CheckBin {
		return store.CheckBin{Start: start.Add(time.Duration(i) * chartBin), OK: ok, Failed: failed, Latency: lat, LatencyMax: lat * 2}
	}
	c := buildChart("c1", "resolver", []store.CheckBin{
		bin(0, 5, 0, 10*ms), bin(1, 5, 0, 20*ms), // a segment
		bin(3, 0, 5, 0),      // nothing passed: a gap, marked
		bin(5, 5, 0, 14*ms),  // a lone point
		bin(287, 4, 1, 5*ms), // the last bin, some failed
		bin(400, 1, 0, ms),   // outside the 24 hours: left out
	}, now)
	if c.Empty || c.W != 288 || c.Top != "20 ms" {
		t.Fatalf("chart: %+v", c)
	}
	if c.Line != "M0 30.0L1 2.0M5 18.8h0.8M287 44.0h0.8" {
		t.Errorf("line %q", c.Line)
	}
	if len(c.Fails) != 2 || c.Fails[0] != (chartMark{X: 3, All: true}) || c.Fails[1] != (chartMark{X: 287}) {
		t.Errorf("fails %+v", c.Fails)
	}
	if want := "Last 24 hours: 19 runs passed, 6 failed (76.00 %). Latency up to 20 ms in a 5-minute mean, 40 ms at most. Failures in 2 of the 5-minute stretches, the last at 11:55 UTC."; c.Summary != want {
		t.Errorf("summary %q\nwant    %q", c.Summary, want)
	}
	if e := buildChart("c2", "x", nil, now); !e.Empty || e.Summary != "No result in the last 24 hours." {
		t.Errorf("empty: %+v", e)
	}
	for _, tc := range []struct{ in, want time.Duration }{{0, ms}, {ms, ms}, {1100 * time.Microsecond, 2 * ms}, {3 * ms, 5 * ms}, {51 * ms, 100 * ms}, {1500 * ms, 2 * time.Second}} {
		if got := niceCeilLatency(tc.in); got != tc.want {
			t.Errorf("niceCeilLatency(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if got := uptimePercent(99.999); got != "99.99 %" {
		t.Errorf("uptime just below 100: %q", got)
	}
}
