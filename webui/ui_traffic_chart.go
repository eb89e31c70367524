package webui

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// trafficChart is a traffic history drawn on the server as an inline SVG (the
// "traffic_chart" template): a line for what was received and one, dashed, for what was
// sent, as rates. The SVG stretches to its box (preserveAspectRatio none, strokes that do
// not scale), so it fits a phone as well as a desktop; its labels are HTML around it. The
// SVG's title and description and a visually hidden table say the same in words. Colours
// come from the style sheet's variables (light and dark), never from inline styles, which
// the content security policy refuses.
type trafficChart struct {
	// ID is unique on the page; the ids of the SVG's title and description start with it.
	ID string
	// Label heads the chart (a tenant's name), a link to Href when that is set; "": the
	// chart's card says what it is.
	Label, Href string
	// Title names the chart ("acme, last 24 hours"), Desc sums it up in words.
	Title, Desc string
	// Err is why the history could not be read; the chart is then left out.
	Err string
	// Empty: no traffic over the range (a note instead of flat lines).
	Empty bool
	// Width and Height are the SVG's user units: a unit per bucket across, 100 up.
	Width, Height int
	// Rx and Tx are the lines' points ("x,y x,y …").
	Rx, Tx string
	// Grid are the heights of the horizontal lines between the top and the bottom.
	Grid []float64
	// YLabels are the rates at the top, the middle and the bottom; XLabels the times at
	// the left, the middle and the right.
	YLabels, XLabels []string
	// Total is what the range carried.
	Total store.Traffic
	// Rows hold the range in a few stretches, for the table screen readers read.
	Rows []chartRow
	// Caption heads the hidden table.
	Caption string
}

// chartRow is one stretch of the range: its start and end, and what it carried.
type chartRow struct {
	Label  string
	Rx, Tx uint64
}

// trafficChartHeight is the SVG's height in user units.
const trafficChartHeight = 100

// chartRows bounds the rows of the hidden table, whose stretches are of the first of
// chartStretches that needs no more.
const chartRows = 24

var chartStretches = []time.Duration{5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 4 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour}

// newTrafficChart draws series s, read at now, of title ("acme") over rangeText ("the last
// 24 hours").
func newTrafficChart(id, title, rangeText string, s control.TrafficSeries, now time.Time) trafficChart {
	c := trafficChart{ID: id, Title: title + ", " + rangeText, Total: s.Total, Height: trafficChartHeight,
		Caption: "Traffic of " + title + " over " + rangeText + ", UTC"}
	n := len(s.Points)
	c.Width = max(n-1, 1)
	c.Grid = []float64{0, trafficChartHeight / 2}
	if n == 0 || s.Step <= 0 || s.Total.IsZero() {
		c.Empty = true
		c.Desc = "No traffic in " + rangeText + "."
		if n > 0 {
			c.XLabels = chartTimes(s)
		}
		return c
	}
	// Rates in bit/s; the last bucket is under way: its rate is over the part gone by.
	rates := func(i int) (rx, tx float64) {
		secs := s.Step.Seconds()
		if i == n-1 {
			secs = min(secs, max(now.Sub(s.Points[i].At).Seconds(), 10))
		}
		p := s.Points[i]
		return float64(p.RxBytes) * 8 / secs, float64(p.TxBytes) * 8 / secs
	}
	var top float64
	peak, peakAt := 0.0, time.Time{}
	for i := range s.Points {
		rx, tx := rates(i)
		top = max(top, rx, tx)
		if rx+tx > peak {
			peak, peakAt = rx+tx, s.Points[i].At
		}
	}
	top = niceCeil(top)
	var rx, tx strings.Builder
	for i := range s.Points {
		r, t := rates(i)
		fmt.Fprintf(&rx, "%d,%s ", i, chartY(r, top))
		fmt.Fprintf(&tx, "%d,%s ", i, chartY(t, top))
		if n == 1 { // one bucket: a flat line across
			fmt.Fprintf(&rx, "1,%s", chartY(r, top))
			fmt.Fprintf(&tx, "1,%s", chartY(t, top))
		}
	}
	c.Rx, c.Tx = strings.TrimSpace(rx.String()), strings.TrimSpace(tx.String())
	c.YLabels = []string{bitRate(top), bitRate(top / 2), "0"}
	c.XLabels = chartTimes(s)
	c.Desc = fmt.Sprintf("Received %s and sent %s in %s; the busiest %s, from %s, carried %s both ways together.",
		humanBytes(s.Total.RxBytes), humanBytes(s.Total.TxBytes), rangeText, stepText(s.Step), when(peakAt), bitRate(peak))
	// The hidden table: up to chartRows stretches of whole buckets, each of a round length.
	per := (n + chartRows - 1) / chartRows
	for _, d := range chartStretches {
		if d >= s.Step && d%s.Step == 0 && (n+int(d/s.Step)-1)/int(d/s.Step) <= chartRows {
			per = int(d / s.Step)
			break
		}
	}
	days := s.Points[n-1].At.Sub(s.Points[0].At) >= 24*time.Hour
	for i := 0; i < n; i += per {
		j := min(i+per, n)
		from, to := s.Points[i].At, s.Points[j-1].At.Add(s.Step)
		row := chartRow{Label: clock(from) + "–" + clock(to)}
		switch {
		case to.Sub(from) >= 24*time.Hour:
			row.Label = day(from)
		case days:
			row.Label = day(from) + " " + row.Label
		}
		for _, p := range s.Points[i:j] {
			row.Rx += p.RxBytes
			row.Tx += p.TxBytes
		}
		c.Rows = append(c.Rows, row)
	}
	return c
}

// chartTimes are the labels under a chart of s: its start, its middle and "now"; times of
// day in UTC for up to two days, days beyond.
func chartTimes(s control.TrafficSeries) []string {
	first, last := s.Points[0].At, s.Points[len(s.Points)-1].At.Add(s.Step)
	mid := first.Add(last.Sub(first) / 2)
	if last.Sub(first) > 48*time.Hour {
		return []string{day(first), day(mid), "now"}
	}
	return []string{clock(first) + " UTC", clock(mid), "now"}
}

// chartY is the height of rate v in a chart whose top is top, in user units from the top.
func chartY(v, top float64) string {
	if top <= 0 {
		return strconv.Itoa(trafficChartHeight)
	}
	return strconv.FormatFloat(trafficChartHeight-v/top*trafficChartHeight, 'f', 1, 64)
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten: the top of a chart's scale. At
// least 1 (a chart of nothing still has a scale).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// bitRate writes a rate in bits per second with SI units: "0 bit/s", "850 bit/s",
// "1.2 kbit/s", "34 Mbit/s".
func bitRate(v float64) string {
	if v < 1000 {
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64) + " bit/s"
	}
	i := -1
	for v >= 1000 && i < 4 {
		v /= 1000
		i++
	}
	unit := []string{"kbit/s", "Mbit/s", "Gbit/s", "Tbit/s", "Pbit/s"}[i]
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " " + unit
}

// clock writes the time of day of t in UTC: "13:05".
func clock(t time.Time) string { return t.UTC().Format("15:04") }

// day writes the day of t in UTC: "Mon 7 Dec".
func day(t time.Time) string { return t.UTC().Format("Mon 2 Jan") }

// stepText words a bucket's length: "5 minutes", "hour".
func stepText(d time.Duration) string {
	switch {
	case d == time.Minute:
		return "minute"
	case d == time.Hour:
		return "hour"
	case d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	}
	return fmt.Sprintf("%d minutes", d/time.Minute)
}
