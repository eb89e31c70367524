package webui

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// nodesPage is the data of the nodes page: the nodes that joined with their health and sync
// state, and the form that makes a join token.
type nodesPage struct {
	Nodes []nodeRow
	// Addr is where nodes reach the controller; "": it does not accept nodes.
	Addr    string
	Regions []store.Region // the join form's choice
	Roles   []roleOption
	TTLs    []linkTTL
	Form    nodeTokenForm
	Errors  formErrors
	// Links is the backbone as the nodes' probes see it; nil when no node reported a link.
	Links *linkMatrix
}

// linkMatrix is the backbone links as a table: a row for each node that reported links, a
// column for each node they reach, a cell for each link (nil where there is none).
type linkMatrix struct {
	To   []string
	Rows []linkRow
}

type linkRow struct {
	From  string
	Cells []*linkCell
}

// linkCell is one link: its state in words, badge colour, smoothed RTT and loss.
type linkCell struct {
	State, Badge string
	RTT          string // "" before the first answer
	Loss         int    // percent of the latest probes
}

// backboneMatrix builds the link table of the nodes' last reports; names are the backbone IDs'
// node names (the controller's own node included when it runs a backbone).
func backboneMatrix(rows []nodeRow, names map[uint32]string) *linkMatrix {
	var cols []uint32
	for _, n := range rows {
		for _, l := range n.Links {
			if !slices.Contains(cols, l.Node) {
				cols = append(cols, l.Node)
			}
		}
	}
	if len(cols) == 0 {
		return nil
	}
	name := func(id uint32) string {
		if s := names[id]; s != "" {
			return s
		}
		return fmt.Sprintf("node #%d", id)
	}
	slices.SortFunc(cols, func(a, b uint32) int { return cmp.Compare(name(a), name(b)) })
	m := &linkMatrix{}
	for _, id := range cols {
		m.To = append(m.To, name(id))
	}
	for _, n := range rows {
		if len(n.Links) == 0 {
			continue
		}
		r := linkRow{From: n.Name, Cells: make([]*linkCell, len(cols))}
		for _, l := range n.Links {
			c := &linkCell{State: l.State, Loss: int(math.Round(l.Loss * 100))}
			switch l.State {
			case plane.LinkUp:
				c.Badge = "ok"
			case plane.LinkDown:
				c.Badge = "bad"
			default:
				c.Badge = "off"
			}
			if l.RTT > 0 {
				c.RTT = formatRTT(l.RTT)
			}
			r.Cells[slices.Index(cols, l.Node)] = c
		}
		m.Rows = append(m.Rows, r)
	}
	return m
}

// formatRTT shows a round trip in milliseconds with two significant decimals below 10 ms.
func formatRTT(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	if ms < 10 {
		return fmt.Sprintf("%.2f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// nodeTokenForm is the join token form as sent.
type nodeTokenForm struct{ Roles, Region, Name, TTL string }

// nodeRow is one node as the pages show it: what it is, and its sync state in words.
type nodeRow struct {
	control.NodeInfo
	// Sync is the state in words ("In sync", "2 generations behind", …) and Badge its
	// colour (ok, warn, bad, off), which only repeats the words.
	Sync, Badge string
	// Detail says more: the apply error, since when its state is stale.
	Detail string
	// StartedAt is when the node started, from its last report; zero: unknown.
	StartedAt time.Time
	// ClockOff is how far the node's clock is from the controller's when that is worth a
	// word (more than clockOffWarn); "" otherwise.
	ClockOff string
	// Online is how many peers were online at the node at its last report; -1: not reported.
	Online int
}

// clockOffWarn is the clock difference a node's row mentions: joining refuses 5 minutes.
const clockOffWarn = 2 * time.Second

// nodeRoleOptions are the roles a join token may give.
var nodeRoleOptions = []roleOption{
	{"pop", "PoP: serves a region's clients"},
	{"exit", "Exit: traffic leaves the overlay there"},
	{"pop,exit", "PoP and exit"},
}

// nodeReport is what the pages read of a node's last report (nodes.last_report, kept by the
// node sync): how long it has run and how far its clock is off.
type nodeReport struct {
	Node struct {
		StartedAt time.Time `json:"started_at"`
	} `json:"node"`
	ClockOffset string `json:"clock_offset"`
	Online      *int   `json:"online"`
}

// nodeRowOf describes n at now.
func nodeRowOf(n control.NodeInfo, now time.Time) nodeRow {
	row := nodeRow{NodeInfo: n, Online: -1}
	var rep nodeReport
	if n.LastReport != "" && json.Unmarshal([]byte(n.LastReport), &rep) == nil {
		row.StartedAt = rep.Node.StartedAt
		if rep.Online != nil && n.Connected {
			row.Online = *rep.Online
		}
		if d, err := time.ParseDuration(rep.ClockOffset); err == nil && (d > clockOffWarn || d < -clockOffWarn) {
			row.ClockOff = d.Round(100 * time.Millisecond).String()
		}
	}
	behind := n.Current - n.AppliedGeneration
	switch {
	case !n.Connected && n.LastSeen.IsZero():
		row.Sync, row.Badge = "Never connected", "off"
		row.Detail = "It joined but has not synced yet: is popgate running on it, and can it reach this controller?"
	case !n.Connected:
		row.Sync, row.Badge = "Offline", "bad"
		row.Detail = fmt.Sprintf("Stale since %s: it serves the state it kept (generation %d; now %d).", ago(now, n.LastSeen), n.AppliedGeneration, n.Current)
	case n.ApplyError != "":
		row.Sync, row.Badge = "Apply failed", "bad"
		row.Detail = sentence(n.ApplyError)
	case n.AppliedGeneration == 0:
		row.Sync, row.Badge = "Starting", "warn"
		row.Detail = "Connected; it has not applied a state yet."
	case behind > 0:
		row.Sync, row.Badge = fmt.Sprintf("%d generation%s behind", behind, plural(behind)), "warn"
		row.Detail = fmt.Sprintf("Applied generation %d; now %d.", n.AppliedGeneration, n.Current)
	default:
		row.Sync, row.Badge = "In sync", "ok"
	}
	return row
}

func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// nodesOnly reports whether the principal may see nodes: owners of the whole installation,
// as on the API (GET /api/v1/nodes). Others are answered 403.
func (u *UI) nodesOnly(w http.ResponseWriter, r *http.Request) bool {
	if !seesNodes(principal(r)) {
		u.forbid(w, r, "Only owners see and manage nodes.")
		return false
	}
	return true
}

// nodeRows returns every node that joined, described at now; nil for a principal who may
// not see nodes (nodesOnly).
func (u *UI) nodeRows(r *http.Request) ([]nodeRow, error) {
	if !seesNodes(principal(r)) {
		return nil, nil
	}
	ns, err := u.ctrl.Nodes(r.Context())
	if err != nil {
		return nil, err
	}
	now := u.now()
	out := make([]nodeRow, len(ns))
	for i, n := range ns {
		out[i] = nodeRowOf(n, now)
	}
	return out, nil
}

// nodes serves GET /nodes (owners): every node with its roles, region, version, backbone,
// connection and sync state, and the form that makes a join token.
func (u *UI) nodes(w http.ResponseWriter, r *http.Request) {
	u.renderNodes(w, r, http.StatusOK, nodeTokenForm{Roles: "pop", TTL: "1h"}, nil)
}

func (u *UI) renderNodes(w http.ResponseWriter, r *http.Request, code int, f nodeTokenForm, errs formErrors) {
	if !u.nodesOnly(w, r) {
		return
	}
	rows, err := u.nodeRows(r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	rs, err := u.ctrl.Regions(r.Context())
	if err != nil {
		u.fail(w, r, err)
		return
	}
	// The controller's own region first: a PoP's region by default.
	slices.SortStableFunc(rs, func(a, b store.Region) int {
		if a.Home != b.Home {
			if a.Home {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Name, b.Name)
	})
	if f.Region == "" && len(rs) > 0 {
		f.Region = rs[0].Name
	}
	u.render(w, r, code, "nodes", view{Title: "Nodes", Nav: "nodes", Data: nodesPage{
		Nodes: rows, Addr: u.ctrl.NodeAddr(), Regions: rs, Roles: nodeRoleOptions, TTLs: linkTTLs, Form: f, Errors: errs,
		Links: u.backboneLinks(rows)}})
}

// backboneLinks is the link table of the Nodes and Network pages: the joined nodes' links
// (rows) and, when it runs a backbone, the controller's own, each node by its name.
func (u *UI) backboneLinks(rows []nodeRow) *linkMatrix {
	own := u.ctrl.OwnNodeName()
	names := map[uint32]string{plane.ControllerNode: own}
	for _, n := range rows {
		names[n.BackboneID] = n.Name
	}
	if links := u.ctrl.OwnLinks(); len(links) > 0 {
		rows = append([]nodeRow{{NodeInfo: control.NodeInfo{Node: store.Node{Name: own}, Links: links}}}, rows...)
	}
	return backboneMatrix(rows, names)
}

// nodeTokenPage is the data of the page that shows a join token, this once.
type nodeTokenPage struct {
	Token   string
	Command string
	Join    store.JoinToken
}

// createNodeToken serves POST /nodes/tokens (owners): fields roles, region (a PoP's; ignored
// for an exit), name (optional) and ttl (1h, 24h or 168h). The answer shows the token and
// the command line that joins a node with it, this once: the controller keeps only its
// hash. Bad input is shown next to its field and nothing is stored.
func (u *UI) createNodeToken(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r, maxForm) || !u.nodesOnly(w, r) {
		return
	}
	f := nodeTokenForm{Roles: r.PostForm.Get("roles"), Region: r.PostForm.Get("region"), Name: r.PostForm.Get("name"), TTL: r.PostForm.Get("ttl")}
	errs := formErrors{}
	roles, err := store.ParseNodeRoles(f.Roles)
	if err != nil || f.Roles == "" {
		errs["roles"] = "Choose the node's roles: PoP, exit, or both."
	}
	if roles == store.RoleExit {
		f.Region = "" // an exit serves no region's clients
	} else if f.Region == "" {
		errs["region"] = "Choose the region whose clients the PoP serves."
	}
	if f.Name != "" {
		if err := store.ValidateNodeName(f.Name); err != nil {
			errs["name"] = nameError(err)
		}
	}
	var life time.Duration
	for _, l := range linkTTLs {
		if l.Value == f.TTL {
			life = l.d
		}
	}
	if life == 0 {
		errs["ttl"] = "Choose how long the token works: 1 hour, 24 hours or 7 days."
	}
	if len(errs) > 0 {
		u.renderNodes(w, r, http.StatusUnprocessableEntity, f, errs)
		return
	}
	line, jt, err := u.ctrl.NodeToken(r.Context(), roles, f.Region, f.Name, life)
	if err != nil {
		switch {
		case errors.Is(err, store.ErrNotFound):
			u.renderNodes(w, r, http.StatusUnprocessableEntity, f, formErrors{"region": sentence(err.Error())})
		case errors.Is(err, store.ErrExists): // a node of that name joined already
			u.renderNodes(w, r, http.StatusUnprocessableEntity, f, formErrors{"name": sentence(err.Error())})
		case errors.Is(err, store.ErrInvalid):
			u.renderNodes(w, r, http.StatusUnprocessableEntity, f, formErrors{"": sentence(err.Error())})
		default:
			u.fail(w, r, err)
		}
		return
	}
	u.render(w, r, http.StatusOK, "node_token", view{Title: "Join token", Nav: "nodes",
		Data: nodeTokenPage{Token: line, Command: "popgate serve --join " + line, Join: jt}})
}

// deleteNodePage is the data of the page that confirms removing a node.
type deleteNodePage struct {
	Node    nodeRow
	Confirm string
	Errors  formErrors
}

// confirmDeleteNode serves GET /nodes/{node}/delete (owners): the confirmation, which works
// without JavaScript.
func (u *UI) confirmDeleteNode(w http.ResponseWriter, r *http.Request) {
	u.renderDeleteNode(w, r, http.StatusOK, "", nil)
}

func (u *UI) renderDeleteNode(w http.ResponseWriter, r *http.Request, code int, confirm string, errs formErrors) {
	if !u.nodesOnly(w, r) {
		return
	}
	rows, err := u.nodeRows(r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	name := r.PathValue("node")
	i := slices.IndexFunc(rows, func(n nodeRow) bool { return n.Name == name })
	if i < 0 {
		u.RenderError(w, r, http.StatusNotFound, "")
		return
	}
	u.render(w, r, code, "node_delete", view{Title: "Remove " + name, Nav: "nodes",
		Data: deleteNodePage{Node: rows[i], Confirm: confirm, Errors: errs}})
}

// deleteNode serves POST /nodes/{node}/delete (owners): field confirm must repeat the node's
// name. Its sync stream closes at once; it drops the state it kept and serves nothing. A
// refusal is the page's error and nothing is removed.
func (u *UI) deleteNode(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r, maxForm) || !u.nodesOnly(w, r) {
		return
	}
	name := r.PathValue("node")
	confirm := strings.TrimSpace(r.PostForm.Get("confirm"))
	if confirm != name {
		u.renderDeleteNode(w, r, http.StatusUnprocessableEntity, confirm,
			formErrors{"confirm": "Type the node's name, " + name + ", to confirm."})
		return
	}
	if _, err := u.ctrl.RemoveNode(r.Context(), name); err != nil { // routes it was dropped from are in the audit log
		if errors.Is(err, store.ErrInvalid) {
			u.renderDeleteNode(w, r, http.StatusUnprocessableEntity, confirm, formErrors{"": sentence(err.Error())})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, "/nodes", "node-removed")
}

// nodePath is the address of node name's pages.
func nodePath(name string) string { return "/nodes/" + url.PathEscape(name) }
