package webui

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/popgate/popgate/store"
)

// regionPoPs are the PoPs of one region as the region pages show them: this controller when
// it is one of them, and the joined nodes with the pop role there.
type regionPoPs struct {
	// Self: this controller serves the region's clients too, as node SelfName, with Online
	// peers online now. Joined PoPs' counts are in their rows (nodeRow.Online), from their
	// last report while they are connected.
	Self     bool
	SelfName string
	Online   int
	// SelfSync and SelfBadge are this controller's own data plane's state, as nodeRow's.
	SelfSync, SelfBadge string
	Nodes               []nodeRow
}

// Count is the number of PoPs.
func (p *regionPoPs) Count() int {
	if p == nil {
		return 0
	}
	n := len(p.Nodes)
	if p.Self {
		n++
	}
	return n
}

// popsByRegion returns the PoPs of every region by name, this controller's own data plane
// among those of region home (the controller's own region; "": leave it out), and false for
// a principal who may not see nodes (nodesOnly), to whom the region pages show none.
func (u *UI) popsByRegion(r *http.Request, home string) (map[string]*regionPoPs, bool, error) {
	if !seesNodes(principal(r)) {
		return nil, false, nil
	}
	rows, err := u.nodeRows(r)
	if err != nil {
		return nil, false, err
	}
	m := map[string]*regionPoPs{}
	at := func(region string) *regionPoPs {
		if m[region] == nil {
			m[region] = &regionPoPs{}
		}
		return m[region]
	}
	// The controller's own data plane, when it serves clients: its peers online are known.
	if home == "" {
		// not asked for
	} else if st, err := u.ctrl.Status(r.Context()); err != nil {
		u.log.Warn("region pages: no status of this controller's own node", "err", err)
	} else if slices.Contains(st.Roles, store.RolePop) {
		p := at(home)
		p.Self, p.SelfName, p.Online = true, st.NodeName, st.PeersOnline
		switch {
		case st.ApplyError != "":
			p.SelfSync, p.SelfBadge = "Apply failed", "bad"
		case st.Applied < st.Generation:
			p.SelfSync, p.SelfBadge = fmt.Sprintf("%d generation%s behind", st.Generation-st.Applied, plural(st.Generation-st.Applied)), "warn"
		default:
			p.SelfSync, p.SelfBadge = "In sync", "ok"
		}
	}
	for _, n := range rows {
		if n.Region != "" && slices.Contains(strings.Split(n.Roles, ","), store.RolePop) {
			p := at(n.Region)
			p.Nodes = append(p.Nodes, n)
		}
	}
	return m, true, nil
}

// seesNodes reports whether p may see nodes: owners of the whole installation.
func seesNodes(p *Principal) bool { return p.Role == RoleOwner && p.Tenant == "" }
