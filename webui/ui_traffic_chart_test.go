package webui

import (
	"encoding/xml"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// TestTrafficChart draws a day of 5-minute buckets: the scale's top is the busiest rate
// rounded up, each line has a point per bucket, the bucket under way counts over the part
// gone by, and the words say what the lines show.
func TestTrafficChart(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 2, 30, 0, time.UTC)
	s := control.TrafficSeries{Step: 5 * time.Minute}
	first := time.Date(2026, 12, 6, 12, 5, 0, 0, time.UTC)
	for i := range 288 {
		s.Points = append(s.Points, store.TrafficSample{At: first.Add(time.Duration(i) * 5 * time.Minute)})
	}
	// 13:00 yesterday: 30 MB received in 5 minutes (800 kbit/s), 3 MB sent; the bucket
	// under way (2.5 minutes gone): 1.5 MB sent (80 kbit/s). The scale's top: 1 Mbit/s.
	s.Points[11].Traffic = store.Traffic{RxBytes: 30_000_000, TxBytes: 3_000_000}
	s.Points[287].Traffic = store.Traffic{TxBytes: 1_500_000}
	s.Total = store.Traffic{RxBytes: 30_000_000, TxBytes: 4_500_000}
	c := newTrafficChart("traffic-acme", "acme", "the last 24 hours", s, now)

	if c.Empty || c.Width != 287 || c.Height != 100 {
		t.Fatalf("chart: empty %v, %d×%d units", c.Empty, c.Width, c.Height)
	}
	if want := []string{"1.0 Mbit/s", "500 kbit/s", "0"}; strings.Join(c.YLabels, "|") != strings.Join(want, "|") {
		t.Errorf("scale %q, want %q", c.YLabels, want)
	}
	if want := []string{"12:05 UTC", "00:05", "now"}; strings.Join(c.XLabels, "|") != strings.Join(want, "|") {
		t.Errorf("times %q, want %q", c.XLabels, want)
	}
	rx, tx := strings.Fields(c.Rx), strings.Fields(c.Tx)
	if len(rx) != 288 || len(tx) != 288 {
		t.Fatalf("%d and %d points, want 288 each", len(rx), len(tx))
	}
	for _, p := range []struct{ got, want string }{
		{rx[0], "0,100.0"}, {rx[11], "11,20.0"}, {tx[11], "11,92.0"}, {tx[287], "287,92.0"}, {rx[287], "287,100.0"},
	} {
		if p.got != p.want {
			t.Errorf("point %s, want %s", p.got, p.want)
		}
	}
	for _, want := range []string{"Received 29 MiB and sent 4.3 MiB in the last 24 hours", "the busiest 5 minutes, from 2026-12-06 13:00 UTC, carried 880 kbit/s"} {
		if !strings.Contains(c.Desc, want) {
			t.Errorf("the description %q lacks %q", c.Desc, want)
		}
	}
	if len(c.Rows) != 24 || c.Rows[0].Label != "12:05–13:05" || c.Rows[0].Rx != 30_000_000 || c.Rows[23].Tx != 1_500_000 {
		t.Errorf("the table: %d rows, first %+v, last %+v; want 24 of an hour each", len(c.Rows), c.Rows[0], c.Rows[len(c.Rows)-1])
	}

	// No traffic: no lines, a note.
	s.Points[11].Traffic, s.Points[287].Traffic, s.Total = store.Traffic{}, store.Traffic{}, store.Traffic{}
	if c := newTrafficChart("x", "acme", "the last 24 hours", s, now); !c.Empty || c.Rx != "" || c.Desc != "No traffic in the last 24 hours." || len(c.Rows) != 0 {
		t.Errorf("a day without traffic: %+v", c)
	}
	// A week is labelled by days.
	week := control.TrafficSeries{Step: time.Hour, Total: store.Traffic{RxBytes: 1}}
	for i := range 168 {
		week.Points = append(week.Points, store.TrafficSample{At: time.Date(2026, 11, 30, 13, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)})
	}
	week.Points[0].RxBytes = 1
	if c := newTrafficChart("w", "acme", "the last 7 days", week, now); c.XLabels[0] != "Mon 30 Nov" || len(c.Rows) != 14 || c.Rows[0].Label != "Mon 30 Nov 13:00–01:00" {
		t.Errorf("a week: times %q, %d rows, first %q", c.XLabels, len(c.Rows), c.Rows[0].Label)
	}
}

// TestNiceCeilBitRate: a chart's top and its rates in words.
func TestNiceCeilBitRate(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		top  float64
		rate string
	}{
		{0, 1, "0 bit/s"}, {850, 1000, "850 bit/s"}, {1001, 2000, "1.0 kbit/s"}, {4200, 5000, "4.2 kbit/s"},
		{34e6, 50e6, "34 Mbit/s"}, {9.9e9, 10e9, "9.9 Gbit/s"},
	} {
		if got := niceCeil(tc.v); got != tc.top {
			t.Errorf("niceCeil(%g) = %g, want %g", tc.v, got, tc.top)
		}
		if got := bitRate(tc.v); got != tc.rate {
			t.Errorf("bitRate(%g) = %q, want %q", tc.v, got, tc.rate)
		}
	}
}

// svgOf returns the inline SVG of the chart id on page body, checked to be well-formed XML.
func svgOf(t *testing.T, body, id string) string {
	t.Helper()
	i := strings.Index(body, `<figure class="chart" id="`+id+`"`)
	if i < 0 {
		t.Fatalf("no chart %s on the page:\n%s", id, excerpt(body))
	}
	fig := body[i:]
	fig = fig[:strings.Index(fig, "</figure>")]
	start, end := strings.Index(fig, "<svg"), strings.Index(fig, "</svg>")
	if start < 0 || end < 0 {
		t.Fatalf("chart %s has no SVG:\n%s", id, fig)
	}
	svg := fig[start : end+len("</svg>")]
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("chart %s: the SVG is not well-formed: %v\n%s", id, err, svg)
		}
	}
	if strings.Contains(fig, "style=") {
		t.Errorf("chart %s has an inline style, which the content security policy refuses", id)
	}
	return fig
}

// TestUITrafficCharts: the dashboard draws the tenants the principal may see, the peer page
// its peer, with the traffic a PoP reported; each chart names itself and says what it
// shows in words; a peer without traffic says so.
func TestUITrafficCharts(t *testing.T) {
	h := newUIHarness(t)
	reportTraffic(t, h.ctrl, 5, map[string]plane.Traffic{
		"acme/laptop": {RxBytes: 3 << 20, TxBytes: 1 << 20, RxPackets: 3000, TxPackets: 1000},
	})

	body := h.check(acmeAdmin, http.MethodGet, "/tenants/acme/peers/laptop", nil, http.StatusOK, "Traffic, last 24 hours")
	fig := svgOf(t, body, "traffic-peer")
	for _, want := range []string{
		`role="img" aria-labelledby="traffic-peer-title traffic-peer-desc"`,
		`<title id="traffic-peer-title">Traffic of laptop, the last 24 hours</title>`,
		"Received 3.0 MiB and sent 1.0 MiB in the last 24 hours",
		`<polyline class="rx" points="0,100.0 `, `<polyline class="tx" points="`,
		`<table class="sr-only">`, "<td>3.0 MiB</td><td>1.0 MiB</td>",
	} {
		if !strings.Contains(fig, want) {
			t.Errorf("laptop's chart lacks %q:\n%s", want, fig)
		}
	}
	// All of it in the bucket under way: the line is at the bottom up to the last point,
	// which is in the upper half (the scale's top is the rate rounded up to 1, 2 or 5).
	m := regexp.MustCompile(`class="rx" points="([^"]*)"`).FindStringSubmatch(fig)
	if m == nil {
		t.Fatalf("no received line:\n%s", fig)
	}
	pts := strings.Fields(m[1])
	_, lastY, _ := strings.Cut(pts[len(pts)-1], ",")
	if y, err := strconv.ParseFloat(lastY, 64); err != nil || y >= 60 || strings.Count(m[1], ",100.0") != len(pts)-1 {
		t.Errorf("the received line: %d points, the last %s; want all but the last at the bottom, the last in the upper part", len(pts), pts[len(pts)-1])
	}

	body = h.check(bravoAdmin, http.MethodGet, "/tenants/bravo/peers/phone", nil, http.StatusOK)
	if fig := svgOf(t, body, "traffic-peer"); !strings.Contains(fig, "No traffic in the last 24 hours.") || strings.Contains(fig, "<polyline") {
		t.Errorf("phone's chart, without traffic:\n%s", fig)
	}

	body = h.check(owner, http.MethodGet, "/", nil, http.StatusOK, "Traffic, last 24 hours")
	if fig := svgOf(t, body, "traffic-acme"); !strings.Contains(fig, "Received 3.0 MiB") || !strings.Contains(fig, `href="/peers?tenant=acme"`) {
		t.Errorf("acme's chart on the dashboard:\n%s", fig)
	}
	svgOf(t, body, "traffic-bravo")
	body = h.check(bravoAdmin, http.MethodGet, "/", nil, http.StatusOK)
	svgOf(t, body, "traffic-bravo")
	if strings.Contains(body, "traffic-acme") || strings.Contains(body, "3.0 MiB") {
		t.Errorf("bravo's admin's dashboard shows acme's traffic:\n%s", excerpt(body))
	}
	h.check(bravoAdmin, http.MethodGet, "/tenants/acme/peers/laptop", nil, http.StatusNotFound)
}
