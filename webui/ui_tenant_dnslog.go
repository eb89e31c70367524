package webui

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/popgate/popgate/store"
)

// dnsLogShown is how many of the newest logged queries the DNS tab shows.
const dnsLogShown = 100

// dnsLogRow is one logged query as the DNS tab shows it.
type dnsLogRow struct {
	At time.Time
	// Who is the peer's name, or the address that asked for a host behind a site.
	Who                              string
	Peer                             bool
	Name, Type, Outcome, Rcode, Node string
	Latency                          string
}

func dnsLogRows(es []store.DNSLogEntry) []dnsLogRow {
	rows := make([]dnsLogRow, len(es))
	for i, e := range es {
		rows[i] = dnsLogRow{At: e.At, Who: e.Peer, Peer: e.Peer != "", Name: e.Name, Type: e.Type, Outcome: e.Outcome, Rcode: e.Rcode,
			Node: e.Node, Latency: latencyText(e.Latency)}
		if e.Latency < 10*time.Microsecond {
			rows[i].Latency = "<0.01 ms" // an answer at once (latencyText says "—" for 0)
		}
		if e.Peer == "" && e.Client.IsValid() {
			rows[i].Who = e.Client.String()
		}
	}
	return rows
}

// parseDNSDuration reads a duration of a DNS form (store.ParseDuration) and checks it with
// valid; "" is 0, the default.
func parseDNSDuration(s string, valid func(time.Duration) error) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := store.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	return d, valid(d)
}

// enableDNSLog serves POST /tenants/{tenant}/dns/log/enable: field keep, how long entries
// are kept ("" for a day). Also changes the keep time of a log that is on.
func (u *UI) enableDNSLog(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	keep := strings.TrimSpace(r.PostForm.Get("keep"))
	d, err := parseDNSDuration(keep, store.ValidateDNSLogKeep)
	if err != nil {
		u.renderTenantDNSWith(w, r, http.StatusUnprocessableEntity, func(p *tenantDNSPage) {
			p.LogForm.Keep = keep
			p.LogErrors = formErrors{"keep": fmt.Sprintf("%s is not a time the log may keep entries: give 1h to 7d, such as 24h, 36h or 7d.", quoteInput(keep))}
		})
		return
	}
	if _, err := u.ctrl.EnableDNSLog(r.Context(), t, d); err != nil {
		u.fail(w, r, err)
		return
	}
	redirect(w, r, tenantPath(t)+"/dns", "dns-log-enabled")
}

// disableDNSLog serves POST /tenants/{tenant}/dns/log/disable: the log goes off and its
// entries are deleted.
func (u *UI) disableDNSLog(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	if _, err := u.ctrl.DisableDNSLog(r.Context(), t); err != nil {
		u.fail(w, r, err)
		return
	}
	redirect(w, r, tenantPath(t)+"/dns", "dns-log-disabled")
}
