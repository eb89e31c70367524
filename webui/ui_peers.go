package webui

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/popgate/popgate/gateway/control"
)

// peersPerPage is how many peers one page of the peers table shows.
const peersPerPage = 50

// peerQuery is what the peers table shows: a search, filters, an order and a page. Unknown
// values fall back to the defaults: a view has nothing to refuse.
type peerQuery struct {
	Q      string // matches name, tenant, addresses, public key, groups, site, endpoint
	Tenant string
	Group  string
	Online string // "", "online", "offline"
	State  string // "", "enabled", "disabled"
	Sort   string // name (tenant, then name), handshake, rx or tx; a leading '-' descends
	Page   int    // from 1
}

var peerSorts = []string{"name", "-name", "handshake", "-handshake", "rx", "-rx", "tx", "-tx"}

func parsePeerQuery(v url.Values) peerQuery {
	q := peerQuery{
		Q:      strings.TrimSpace(v.Get("q")),
		Tenant: v.Get("tenant"),
		Group:  v.Get("group"),
		Online: v.Get("online"),
		State:  v.Get("state"),
		Sort:   v.Get("sort"),
	}
	if len(q.Q) > 200 {
		q.Q = q.Q[:200]
		for !utf8.ValidString(q.Q) {
			q.Q = q.Q[:len(q.Q)-1]
		}
	}
	if q.Online != "online" && q.Online != "offline" {
		q.Online = ""
	}
	if q.State != "enabled" && q.State != "disabled" {
		q.State = ""
	}
	if !slices.Contains(peerSorts, q.Sort) {
		q.Sort = "name"
	}
	q.Page, _ = strconv.Atoi(v.Get("page"))
	q.Page = max(q.Page, 1)
	return q
}

// values encodes q, leaving out defaults so that URLs stay short.
func (q peerQuery) values() url.Values {
	v := url.Values{}
	for _, kv := range [][2]string{{"q", q.Q}, {"tenant", q.Tenant}, {"group", q.Group}, {"online", q.Online}, {"state", q.State}} {
		if kv[1] != "" {
			v.Set(kv[0], kv[1])
		}
	}
	if q.Sort != "name" {
		v.Set("sort", q.Sort)
	}
	if q.Page > 1 {
		v.Set("page", strconv.Itoa(q.Page))
	}
	return v
}

func (q peerQuery) url(path string) string {
	if s := q.values().Encode(); s != "" {
		return path + "?" + s
	}
	return path
}

// URL is the page's address.
func (q peerQuery) URL() string { return q.url("/peers") }

// TableURL is the address of the live table fragment.
func (q peerQuery) TableURL() string { return q.url("/peers/table") }

// PageURL is the address of page n.
func (q peerQuery) PageURL(n int) string {
	q.Page = n
	return q.URL()
}

// SortURL is the address that sorts by key: the other direction when already sorted by it,
// else names ascending and the rest descending (most recent, busiest first).
func (q peerQuery) SortURL(key string) string {
	switch q.Sort {
	case key:
		q.Sort = "-" + key
	case "-" + key:
		q.Sort = key
	default:
		q.Sort = key
		if key != "name" {
			q.Sort = "-" + key
		}
	}
	q.Page = 1
	return q.URL()
}

// AriaSort is the aria-sort value of the column of key.
func (q peerQuery) AriaSort(key string) string {
	switch q.Sort {
	case key:
		return "ascending"
	case "-" + key:
		return "descending"
	}
	return "none"
}

// peersPage is the data of the peers page and its live table.
type peersPage struct {
	Query      peerQuery
	Rows       []*control.PeerInfo
	Matched    int // peers that match the query
	MatchedOn  int // of them online
	Visible    int // peers before search and filters
	From, To   int // the rows shown, from 1
	Pages      int
	Tenants    []string // filter choices
	Groups     []string
	ShowTenant bool // the table has a tenant column
	Scoped     bool // the principal sees one tenant only
	CanCreate  bool
	// Tenant is set on a tenant's own peers page (the tenant's tabs show).
	Tenant *control.TenantInfo
}

// peers serves GET /peers: every peer the principal may see (?tenant=T: one tenant's), with
// search, filters, sorting and paging.
func (u *UI) peers(w http.ResponseWriter, r *http.Request) {
	p, ok := u.peersData(w, r, true)
	if !ok {
		return
	}
	title, nav := "Peers", "peers"
	if p.Query.Tenant != "" {
		title = p.Query.Tenant + " · Peers"
	}
	if r.URL.Query().Get("tenant") != "" {
		// A tenant's own page (reached from the tenants, its tabs): under Tenants, like its
		// policy and routes.
		nav = "tenants"
	}
	u.render(w, r, http.StatusOK, "peers", view{Title: title, Nav: nav, Data: p})
}

// peersTable serves GET /peers/table: the table alone, which htmx polls every 5 s and swaps
// in when the filters change.
func (u *UI) peersTable(w http.ResponseWriter, r *http.Request) {
	p, ok := u.peersData(w, r, false)
	if !ok {
		return
	}
	// The address bar follows the filters without a history entry per keystroke.
	w.Header().Set("HX-Replace-Url", p.Query.URL())
	u.renderFragment(w, r, "peers", "peers_table", view{Data: p})
}

// peersData loads and selects the peers of the query. Only the tenants the principal may
// see are loaded; asking for another one answers 404. The whole page (full) also needs the
// tenants, for the filter and the header; the live table does not.
func (u *UI) peersData(w http.ResponseWriter, r *http.Request, full bool) (*peersPage, bool) {
	ctx := r.Context()
	me := principal(r)
	q := parsePeerQuery(r.URL.Query())
	if me.Tenant != "" && q.Tenant == "" {
		q.Tenant = me.Tenant
	}
	if q.Tenant != "" && !u.seeTenant(w, r, q.Tenant) {
		return nil, false
	}
	all, err := u.ctrl.ListPeers(ctx, q.Tenant)
	if err != nil {
		u.fail(w, r, err)
		return nil, false
	}
	p := &peersPage{Query: q, Scoped: me.Tenant != ""}
	if q.Tenant != "" {
		p.CanCreate = me.CanChangeTenant(q.Tenant)
	} else {
		p.CanCreate = me.Role != RoleViewer
	}
	if full {
		tenants, err := u.ctrl.ListTenants(ctx)
		if err != nil {
			u.fail(w, r, err)
			return nil, false
		}
		for i := range tenants {
			if t := &tenants[i]; me.CanSeeTenant(t.Name) {
				p.Tenants = append(p.Tenants, t.Name)
				if t.Name == q.Tenant {
					p.Tenant = t
				}
			}
		}
	}
	p.ShowTenant = q.Tenant == ""
	selectPeers(p, all)
	return p, true
}

// selectPeers fills p's rows from all (in the controller's order: by tenant, then name):
// search and filter, sort, then cut out the page. It touches each peer once and sorts
// pointers.
func selectPeers(p *peersPage, all []control.PeerInfo) {
	q := &p.Query
	needle := strings.ToLower(q.Q)
	groups := map[string]struct{}{}
	matched := make([]*control.PeerInfo, 0, len(all))
	for i := range all {
		pi := &all[i]
		for _, g := range pi.Groups {
			groups[g] = struct{}{}
		}
		if q.Group != "" && !slices.Contains(pi.Groups, q.Group) ||
			q.Online == "online" && !pi.Online || q.Online == "offline" && pi.Online ||
			q.State == "enabled" && !pi.Enabled || q.State == "disabled" && pi.Enabled ||
			needle != "" && !peerMatches(pi, needle) {
			continue
		}
		matched = append(matched, pi)
		if pi.Online {
			p.MatchedOn++
		}
	}
	p.Visible, p.Matched = len(all), len(matched)
	p.Groups = make([]string, 0, len(groups))
	for g := range groups {
		p.Groups = append(p.Groups, g)
	}
	slices.Sort(p.Groups)

	// The controller lists peers by tenant, then name: that is the name order, and ties of
	// the other keys keep it. The default view needs no sorting at all.
	key, desc := strings.CutPrefix(q.Sort, "-")
	var by func(a, b *control.PeerInfo) int
	switch key {
	case "handshake":
		by = func(a, b *control.PeerInfo) int { return a.LastHandshake.Compare(b.LastHandshake) }
	case "rx":
		by = func(a, b *control.PeerInfo) int { return cmp.Compare(a.RxBytes, b.RxBytes) }
	case "tx":
		by = func(a, b *control.PeerInfo) int { return cmp.Compare(a.TxBytes, b.TxBytes) }
	default:
		by = func(a, b *control.PeerInfo) int {
			return cmp.Or(strings.Compare(a.TenantName, b.TenantName), strings.Compare(a.Name, b.Name))
		}
	}
	order := by
	if desc {
		order = func(a, b *control.PeerInfo) int { return by(b, a) }
	}
	if !slices.IsSortedFunc(matched, order) {
		// Stable by the position in the controller's order; pdqsort with that tie-break is
		// several times faster than a stable merge sort on keys with many ties.
		type ranked struct {
			p *control.PeerInfo
			i int
		}
		rs := make([]ranked, len(matched))
		for i, p := range matched {
			rs[i] = ranked{p, i}
		}
		slices.SortFunc(rs, func(a, b ranked) int { return cmp.Or(order(a.p, b.p), cmp.Compare(a.i, b.i)) })
		for i := range rs {
			matched[i] = rs[i].p
		}
	}

	p.Pages = max(1, (len(matched)+peersPerPage-1)/peersPerPage)
	q.Page = min(q.Page, p.Pages)
	from := (q.Page - 1) * peersPerPage
	to := min(from+peersPerPage, len(matched))
	p.Rows = matched[from:to]
	p.From, p.To = from+1, to
	if len(matched) == 0 {
		p.From = 0
	}
}

// peerMatches reports whether the peer's name, tenant, addresses, public key, groups, site
// or endpoint contain needle (lower case).
func peerMatches(p *control.PeerInfo, needle string) bool {
	if containsFold(p.Name, needle) || containsFold(p.TenantName, needle) || containsFold(p.Site, needle) ||
		strings.Contains(p.Endpoint, needle) {
		return true
	}
	for _, g := range p.Groups {
		if containsFold(g, needle) {
			return true
		}
	}
	if p.IPv4.IsValid() && strings.Contains(p.IPv4.String(), needle) ||
		p.IPv6.IsValid() && strings.Contains(p.IPv6.String(), needle) {
		return true
	}
	// Public keys match from their start, once the search is long enough to mean a key.
	return len(needle) >= 4 && strings.HasPrefix(strings.ToLower(p.PublicKey.String()), needle)
}

// containsFold reports whether s contains needle, ignoring ASCII case; needle is lower case.
func containsFold(s, needle string) bool {
	if len(needle) > len(s) {
		return false
	}
	for i := 0; i+len(needle) <= len(s); i++ {
		j := 0
		for ; j < len(needle); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != needle[j] {
				break
			}
		}
		if j == len(needle) {
			return true
		}
	}
	return false
}
