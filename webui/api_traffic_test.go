package webui

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// reportTraffic makes the controller hear a joined node that started just now report what
// peers carried (by tenant and peer name), as a PoP's report does: all of it counts.
func reportTraffic(t testing.TB, ctrl *control.Controller, node int64, traffic map[string]plane.Traffic) {
	t.Helper()
	rep := &plane.Report{Node: plane.NodeStatus{StartedAt: time.Now()}}
	tenants := map[string]*plane.Traffic{}
	for name, tr := range traffic {
		tenant, peer, _ := strings.Cut(name, "/")
		p, err := ctrl.Peer(setup(), tenant, peer)
		if err != nil {
			t.Fatal(err)
		}
		rep.Peers = append(rep.Peers, plane.PeerState{PublicKey: p.PublicKey, RxBytes: tr.RxBytes, TxBytes: tr.TxBytes, RxPackets: tr.RxPackets, TxPackets: tr.TxPackets})
		if tenants[tenant] == nil {
			tenants[tenant] = new(plane.Traffic)
			rep.Tenants = append(rep.Tenants, plane.TenantState{ID: p.TenantID, Name: tenant})
		}
		tenants[tenant].Add(tr)
	}
	for i := range rep.Tenants {
		rep.Tenants[i].Traffic = *tenants[rep.Tenants[i].Name]
	}
	ctrl.NodeReported(store.Node{ID: node, Name: "pop"}, rep, 0)
}

// TestAPITraffic: the traffic history of a tenant and of a peer, summed over two nodes, as
// the API answers it; a token limited to a tenant reads only its own; a range the history
// does not have is refused with the ones it has.
func TestAPITraffic(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addTenant("acme")
	e.addTenant("bravo")
	for _, p := range []control.AddPeerRequest{{Tenant: "acme", Name: "laptop"}, {Tenant: "acme", Name: "phone"}, {Tenant: "bravo", Name: "pc"}} {
		if _, _, err := e.ctrl.AddPeer(setup(), p); err != nil {
			t.Fatal(err)
		}
	}
	reportTraffic(t, e.ctrl, 3, map[string]plane.Traffic{
		"acme/laptop": {RxBytes: 1000, TxBytes: 8000, RxPackets: 10, TxPackets: 20},
		"bravo/pc":    {RxBytes: 5, TxBytes: 5, RxPackets: 1, TxPackets: 1},
	})
	reportTraffic(t, e.ctrl, 4, map[string]plane.Traffic{
		"acme/laptop": {RxBytes: 500, TxBytes: 500, RxPackets: 5, TxPackets: 5},
		"acme/phone":  {RxBytes: 100, TxBytes: 200, RxPackets: 1, TxPackets: 2},
	})
	owner := e.addToken("root", "owner", "", time.Time{})
	scoped := e.addToken("acme-viewer", "viewer", "acme", time.Time{})

	get := func(token, path string, want int) APITraffic {
		t.Helper()
		code, body := e.call(token, http.MethodGet, path, "")
		if code != want {
			t.Fatalf("GET %s: %d %s, want %d", path, code, body, want)
		}
		var out APITraffic
		if code == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &out); err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
		}
		return out
	}
	acme := get(scoped, "/api/v1/tenants/acme/traffic", 200)
	if acme.RxBytes != 1600 || acme.TxBytes != 8700 || acme.RxPackets != 16 || acme.TxPackets != 27 || acme.Range != "24h" || acme.StepSeconds != 300 {
		t.Errorf("acme's day: %+v, want 1600/8700 bytes, 16/27 packets in 5-minute steps", acme)
	}
	if n := len(acme.Points); n < 288 || n > 289 {
		t.Errorf("acme's day has %d points, want 288 or 289", n)
	} else if last := acme.Points[n-1]; last.RxBytes != 1600 || time.Since(last.At) > 5*time.Minute {
		t.Errorf("acme's last point: %+v, want 1600 bytes received, in the present's bucket", last)
	}
	if week := get(owner, "/api/v1/tenants/acme/traffic?range=7d", 200); week.RxBytes != 1600 || week.StepSeconds != 3600 {
		t.Errorf("acme's week: %d bytes received in steps of %d s, want 1600 in hours", week.RxBytes, week.StepSeconds)
	}
	laptop := get(scoped, "/api/v1/tenants/acme/peers/laptop/traffic?range=1h", 200)
	if laptop.RxBytes != 1500 || laptop.TxBytes != 8500 || laptop.Peer != "laptop" || len(laptop.Points) > 13 {
		t.Errorf("laptop's hour: %d/%d bytes, peer %q, %d points; want 1500/8500, laptop, at most 13", laptop.RxBytes, laptop.TxBytes, laptop.Peer, len(laptop.Points))
	}
	if pc := get(owner, "/api/v1/tenants/bravo/peers/pc/traffic?range=48h", 200); pc.RxBytes != 5 || pc.StepSeconds != 600 {
		t.Errorf("pc's 48 hours: %d bytes received in steps of %d s, want 5 in 10 minutes", pc.RxBytes, pc.StepSeconds)
	}

	// Another tenant's history is refused to a token of acme, like the tenant itself.
	get(scoped, "/api/v1/tenants/bravo/traffic", 403)
	get(scoped, "/api/v1/tenants/bravo/peers/pc/traffic", 403)
	get(owner, "/api/v1/tenants/nope/traffic", 404)
	get(owner, "/api/v1/tenants/acme/peers/nope/traffic", 404)
	for _, path := range []string{"/api/v1/tenants/acme/traffic?range=1h", "/api/v1/tenants/acme/peers/laptop/traffic?range=7d"} {
		code, body := e.call(owner, http.MethodGet, path, "")
		if code != 400 || !strings.Contains(body, "use ") {
			t.Errorf("GET %s: %d %s, want 400 naming the ranges there are", path, code, body)
		}
	}
}
