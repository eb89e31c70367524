package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/popgate/popgate/webui"
)

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// humanBytes formats a byte count with binary units: "0 B", "512 B", "1.5 KiB", "12 MiB".
func humanBytes(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10) + " B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v < 10 {
		return fmt.Sprintf("%.1f %s", v, units[i])
	}
	return fmt.Sprintf("%.0f %s", v, units[i])
}

// humanDuration formats seconds in the two largest units: "45s", "2m 5s", "3h 12m", "4d 2h".
func humanDuration(secs int64) string {
	if secs < 0 {
		secs = 0
	}
	d, h, m, s := secs/86400, secs/3600%24, secs/60%60, secs%60
	switch {
	case d > 0:
		return fmt.Sprintf("%dd %dh", d, h)
	case h > 0:
		return fmt.Sprintf("%dh %dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm %ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

// ago formats how long before now t was, in its largest unit: "just now", "45s ago", "2m ago",
// "3h ago", "5d ago".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

func handshake(now time.Time, p webui.APIPeer) string {
	if p.LastHandshake == nil {
		return "never"
	}
	return ago(now, *p.LastHandshake)
}

// peerState is "enabled", "disabled" or, for an enabled peer past its expiry at now,
// "expired".
func peerState(now time.Time, p webui.APIPeer) string {
	switch {
	case !p.Enabled:
		return "disabled"
	case p.ExpiresAt != nil && !now.Before(*p.ExpiresAt):
		return "expired"
	}
	return "enabled"
}

// expiresText says when a peer expires: "never", or the time and how far off it is.
func expiresText(now time.Time, p webui.APIPeer) string {
	if p.ExpiresAt == nil {
		return "never"
	}
	at := p.ExpiresAt.Local().Format("2006-01-02 15:04:05 MST")
	if !now.Before(*p.ExpiresAt) {
		return at + " (" + ago(now, *p.ExpiresAt) + ")"
	}
	return at + " (in " + strings.TrimSuffix(ago(*p.ExpiresAt, now), " ago") + ")"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// orDash is s, or "-" when s is empty: a table cell is never blank.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// streamTable prints a table as its rows come, laid out as newTable lays out a whole one. It
// holds the first rows (up to hold) to size the columns and prints the rest at once with those
// widths: a later cell that does not fit pushes the rest of its own row right, and no other.
type streamTable struct {
	w      io.Writer
	hold   int
	held   [][]string
	widths []int // nil until the held rows are out
	line   []byte
}

// tablePadding is newTable's: two spaces after the widest cell of a column.
const tablePadding = 2

func newStreamTable(w io.Writer, hold int) *streamTable { return &streamTable{w: w, hold: hold} }

// Row adds a row.
func (t *streamTable) Row(cells ...string) error {
	if t.widths == nil {
		t.held = append(t.held, cells)
		if len(t.held) < t.hold {
			return nil
		}
		return t.release()
	}
	return t.print(cells)
}

// Flush prints the rows still held.
func (t *streamTable) Flush() error {
	if t.widths == nil {
		return t.release()
	}
	return nil
}

func (t *streamTable) release() error {
	t.widths = []int{}
	for _, row := range t.held {
		for i, c := range row[:max(len(row)-1, 0)] { // the last cell of a row is not a column
			if i == len(t.widths) {
				t.widths = append(t.widths, 0)
			}
			t.widths[i] = max(t.widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range t.held {
		if err := t.print(row); err != nil {
			return err
		}
	}
	t.held = nil
	return nil
}

func (t *streamTable) print(cells []string) error {
	t.line = t.line[:0]
	for i, c := range cells {
		t.line = append(t.line, c...)
		if i == len(cells)-1 {
			break
		}
		pad := tablePadding
		if i < len(t.widths) {
			pad = max(t.widths[i]+tablePadding-utf8.RuneCountInString(c), tablePadding)
		}
		for range pad {
			t.line = append(t.line, ' ')
		}
	}
	t.line = append(t.line, '\n')
	_, err := t.w.Write(t.line)
	return err
}
