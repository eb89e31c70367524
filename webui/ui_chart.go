package webui

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/popgate/popgate/store"
)

// A check's last 24 hours as a small chart drawn on the server: an inline SVG (no script, no
// style attribute: the classes of app.css colour it, in both colour schemes), one unit of
// width per 5-minute bin, the latency as a line broken where nothing passed, the bins with
// failures marked across the whole height; and the same in words, which the SVG is labelled
// with, for those who do not see it.

const (
	chartSpan   = 24 * time.Hour
	chartBin    = 5 * time.Minute
	chartBins   = int(chartSpan / chartBin) // 288
	chartHeight = 60
)

// checkChart is what the template draws.
type checkChart struct {
	// ID is unique on the page (for aria-labelledby).
	ID string
	// W and H are the viewBox; Line is the latency path ("" when nothing passed).
	W, H int
	Line string
	// Fails are the bins with failures; Top labels the top of the scale ("30 ms").
	Fails []chartMark
	Top   string
	// Title names the chart; Summary says in words what it shows.
	Title, Summary string
	// Empty: no result in the 24 hours.
	Empty bool
}

// chartMark is one bin with failures: All when every run in it failed.
type chartMark struct {
	X   int
	All bool
}

// buildChart draws bins (store.CheckBins of the 24 hours up to now, in chartBin bins) as chart
// id titled title.
func buildChart(id, title string, bins []store.CheckBin, now time.Time) checkChart {
	c := checkChart{ID: id, W: chartBins, H: chartHeight, Title: title + ", last 24 hours"}
	start := now.Add(-chartSpan).Truncate(chartBin)
	var top time.Duration
	var ok, failed int
	var highest time.Duration
	var lastFail time.Time
	slot := make([]*store.CheckBin, chartBins+1)
	for i := range bins {
		b := &bins[i]
		x := int(b.Start.Sub(start) / chartBin)
		if x < 0 || x > chartBins {
			continue
		}
		slot[x] = b
		ok, failed = ok+b.OK, failed+b.Failed
		if b.OK > 0 {
			top = max(top, b.Latency)
			highest = max(highest, b.LatencyMax)
		}
		if b.Failed > 0 && b.Start.After(lastFail) {
			lastFail = b.Start
		}
	}
	if ok+failed == 0 {
		c.Empty = true
		c.Summary = "No result in the last 24 hours."
		return c
	}
	scale := niceCeilLatency(top)
	c.Top = latencyText(scale)
	var path strings.Builder
	open := false // a segment is being drawn
	points := 0   // in the segment
	for x := 0; x <= chartBins && x < len(slot); x++ {
		b := slot[x]
		if b != nil && b.Failed > 0 {
			c.Fails = append(c.Fails, chartMark{X: min(x, chartBins-1), All: b.OK == 0})
		}
		if b == nil || b.OK == 0 {
			if open && points == 1 {
				path.WriteString("h0.8") // a lone point shows as a dot (round caps)
			}
			open = false
			continue
		}
		y := float64(chartHeight-2) - float64(b.Latency)/float64(scale)*float64(chartHeight-4)
		cmd := "L"
		if !open {
			cmd, open, points = "M", true, 0
		}
		points++
		fmt.Fprintf(&path, "%s%d %s", cmd, x, strconv.FormatFloat(y, 'f', 1, 64))
	}
	if open && points == 1 {
		path.WriteString("h0.8")
	}
	c.Line = path.String()

	var s strings.Builder
	fmt.Fprintf(&s, "Last 24 hours: %s run%s passed, %s failed (%s). ", num(ok), pluralS(ok), num(failed), percentText(ok, failed))
	if ok > 0 {
		fmt.Fprintf(&s, "Latency up to %s in a 5-minute mean, %s at most. ", latencyText(top), latencyText(highest))
	}
	if failed > 0 {
		fmt.Fprintf(&s, "Failures in %d of the 5-minute stretches, the last at %s UTC.", len(c.Fails), lastFail.UTC().Format("15:04"))
	} else {
		s.WriteString("No failure.")
	}
	c.Summary = s.String()
	return c
}

// niceCeilLatency rounds d up to 1, 2 or 5 times a power of ten of microseconds (niceCeil),
// at least 1 ms: a scale a reader takes in at a glance.
func niceCeilLatency(d time.Duration) time.Duration {
	return time.Duration(niceCeil(float64(max(d.Microseconds(), 1000)))) * time.Microsecond
}

// latencyText words a latency: "0.42 ms", "12 ms", "1.2 s".
func latencyText(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// percentText is the share of ok in ok+failed: "99.95 %", "100 %", "—" without any.
func percentText(ok, failed int) string {
	if ok+failed == 0 {
		return "—"
	}
	return uptimePercent(100 * float64(ok) / float64(ok+failed))
}

// uptimePercent words an uptime: two decimals below 100, "100 %" for all.
func uptimePercent(p float64) string {
	if p < 0 {
		return "—"
	}
	if p >= 100 {
		return "100 %"
	}
	return strconv.FormatFloat(min(p, 99.99), 'f', 2, 64) + " %"
}

func pluralS(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// everyText words a check's interval: "10s", "1m", "1m30s", "1h".
func everyText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
