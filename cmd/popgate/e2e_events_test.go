package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
	"github.com/popgate/popgate/webui"
)

// eventReceiver is the operator's webhook receiver: it checks each delivery's signature as
// README says (HMAC-SHA256 of the raw body, keyed with the secret) and keeps those that
// verify; a delivery that does not is counted and refused.
type eventReceiver struct {
	mu       sync.Mutex
	secret   string
	got      []webui.APIEvent
	at       []time.Time
	unsigned int
}

func (r *eventReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 64<<10))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := hmac.New(sha256.New, []byte(r.secret))
	m.Write(body)
	var e webui.APIEvent
	if !hmac.Equal([]byte(req.Header.Get("X-Popgate-Signature")), []byte("sha256="+hex.EncodeToString(m.Sum(nil)))) || json.Unmarshal(body, &e) != nil {
		r.unsigned++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	r.got = append(r.got, e)
	r.at = append(r.at, time.Now())
	w.WriteHeader(http.StatusNoContent)
}

// find returns the first event delivered that match accepts, and when it came.
func (r *eventReceiver) find(match func(webui.APIEvent) bool) (webui.APIEvent, time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, e := range r.got {
		if match(e) {
			return e, r.at[i], true
		}
	}
	return webui.APIEvent{}, time.Time{}, false
}

// failoverOf matches a failover event of node's subject from one exit to another.
func failoverOf(node, subject, from, to string) func(webui.APIEvent) bool {
	return func(e webui.APIEvent) bool {
		return e.Kind == "failover" && e.Node == node && e.Subject == subject && e.Data["from"] == from && e.Data["to"] == to
	}
}

// TestE2EEvents: issue 16's alerts on TestE2EBackboneFailover's network: a controller alone
// (--roles controller), a PoP without the exit role and two exits of its region. The
// operator's webhook receiver listens on the controller's loopback. Exit 1 is killed with
// SIGKILL: the PoP's link to it goes down and the PoP's internet traffic and a tenant's
// route via exit:x1,exit:x2 fail over to exit 2; those events are in 'popgate event list'
// on the controller (the route's as the tenant's, the internet's as the network's) and reach
// the webhook, signed with the secret 'event webhook set' printed, and the PoP's /metrics
// counts the link's fall; x1, silent, is offline
// at the controller. Exit 1 comes back: the traffic returns, and x1 is back.
func TestE2EEvents(t *testing.T) {
	bin := e2eRequireBinary(t)
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "ip", "curl")
	n := testbed.NewNetwork(t)
	mk := func(role, ifprefix string, on ...string) *netProc {
		return newNetProc(t, bin, n, role, ifprefix, on...)
	}
	ctrl := mk("bectl", "bec", testbed.Backbone)
	pop := mk("bepop", "bep", testbed.WAN, testbed.Backbone)
	x1 := mk("bex", "bex", testbed.Backbone, testbed.Internet)
	x2 := mk("bey", "bey", testbed.Backbone, testbed.Internet)
	ctrl.args = []string{"--roles", "controller", "--web-addr", "127.0.0.1:0",
		"--public-endpoint", netip.AddrPortFrom(pop.node.Addr4[testbed.WAN], 49011).String(),
		"--controller-addr", netip.AddrPortFrom(ctrl.node.Addr4[testbed.Backbone], 49000).String()}
	for i, p := range []*netProc{pop, x1, x2} {
		p.args = []string{"--listen-port", fmt.Sprint(49011 + i), "--interface", p.ifname, "--web-addr", "127.0.0.1:0",
			"--exit-mode", "userspace", "--backbone-port", fmt.Sprint(49021 + i),
			"--backbone-endpoint", netip.AddrPortFrom(p.node.Addr4[testbed.Backbone], uint16(49021+i)).String()}
	}

	// The receiver, in the controller's namespace: the controller reaches it on loopback.
	rcv := new(eventReceiver)
	ln, err := ctrl.node.NS.Listen("tcp", "127.0.0.1:49090")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: rcv, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	ctrl.startController()
	secret := strings.TrimSpace(ctrl.mustCLI("event", "webhook", "set", "http://127.0.0.1:49090/popgate"))
	rcv.mu.Lock()
	rcv.secret = secret
	rcv.mu.Unlock()

	join := func(p *netProc, roles, name string) {
		t.Helper()
		p.start("--join", ctrl.joinToken(roles, "local", name))
		ctrl.waitInSync(60*time.Second, name)
	}
	join(pop, "pop", "p1")
	join(x1, "exit", "x1") // x1 first: the lower backbone ID, the region's first exit
	join(x2, "exit", "x2")
	ctrl.mustCLI("tenant", "add", "acme")
	ctrl.mustCLI("route", "add", "--tenant", "acme", "--via", "exit:x1,exit:x2", "10.99.0.0/16")
	ctrl.waitInSync(30*time.Second, "p1", "x1", "x2")
	pop.waitLinksUp(30*time.Second, "the PoP's links to both exits up", 2)
	// The nodes connected: events of the controller's own, at the webhook too.
	for _, name := range []string{"p1", "x1", "x2"} {
		testbed.Poll(t, 30*time.Second, name+" connected, at the webhook", func(context.Context) error {
			if _, _, ok := rcv.find(func(e webui.APIEvent) bool { return e.Kind == "node.connected" && e.Node == name }); !ok {
				return errors.New("not yet")
			}
			return nil
		})
	}

	// list reads 'popgate event list --json' on the controller with args.
	list := func(ctx context.Context, args ...string) ([]webui.APIEvent, error) {
		out, stderr, err := ctrl.cli(ctx, append([]string{"event", "list", "--json", "--limit", "1000"}, args...)...)
		if err != nil {
			return nil, fmt.Errorf("event list: %v: %s", err, stderr)
		}
		var page webui.APIEvents
		return page.Events, json.Unmarshal([]byte(out), &page)
	}
	// recorded waits until the event log has an event that match accepts.
	recorded := func(what string, within time.Duration, match func(webui.APIEvent) bool, args ...string) webui.APIEvent {
		t.Helper()
		var found webui.APIEvent
		testbed.Poll(t, within, what+" in 'popgate event list'", func(ctx context.Context) error {
			es, err := list(ctx, args...)
			if err != nil {
				return err
			}
			i := slices.IndexFunc(es, match)
			if i < 0 {
				return fmt.Errorf("not among %d events", len(es))
			}
			found = es[i]
			return nil
		})
		return found
	}
	delivered := func(what string, within time.Duration, match func(webui.APIEvent) bool) (webui.APIEvent, time.Time) {
		t.Helper()
		var e webui.APIEvent
		var at time.Time
		testbed.Poll(t, within, what+" at the webhook", func(context.Context) error {
			var ok bool
			if e, at, ok = rcv.find(match); !ok {
				return errors.New("not yet")
			}
			return nil
		})
		return e, at
	}
	if es, err := list(context.Background(), "--kind", "failover"); err != nil || len(es) != 0 {
		t.Fatalf("failovers before any exit died (the backbone starting is none): %+v, %v", es, err)
	}

	killed := time.Now()
	x1.kill()
	internet := failoverOf("p1", "internet:p1", "x1", "x2")
	route := failoverOf("p1", "route:acme/10.99.0.0/16", "x1", "x2")
	e := recorded("the PoP's internet failover x1 → x2", 30*time.Second, internet, "--kind", "failover")
	inLog := time.Since(killed)
	if e.Tenant != "" || !strings.Contains(e.Message, "now leaves through x2") {
		t.Errorf("the internet's failover: %+v", e)
	}
	e = recorded("acme's route failover x1 → x2", 30*time.Second, route, "--tenant", "acme")
	if e.Tenant != "acme" {
		t.Errorf("the route's failover: %+v", e)
	}
	recorded("the PoP's link to x1 down", 30*time.Second, func(e webui.APIEvent) bool {
		return e.Kind == "link.down" && e.Node == "p1" && e.Subject == "link:p1/x1"
	}, "--kind", "link")
	// The tenant sees its route's failover, not the network's.
	if es, err := list(context.Background(), "--tenant", "acme"); err != nil || slices.ContainsFunc(es, internet) || slices.ContainsFunc(es, func(e webui.APIEvent) bool { return e.Tenant != "acme" }) {
		t.Errorf("acme's events hold another's: %+v, %v", es, err)
	}
	// The counter beside the event: the PoP's /metrics counts the link's fall.
	x1Downs := `popgate_backbone_link_transitions_total{node="x1",to="down"}`
	testbed.Poll(t, 30*time.Second, "the PoP's "+x1Downs, func(ctx context.Context) error {
		if v, err := e2eMetric(ctx, pop.node.NS, x1Downs); err != nil || v < 1 {
			return fmt.Errorf("%v, %v", v, err)
		}
		return nil
	})
	_, at := delivered("the internet's failover", 30*time.Second, internet)
	delivered("the route's failover", 30*time.Second, route)
	t.Logf("exit 1 killed: the failover in the event log within %v (polled), at the webhook %v after the kill",
		inLog.Round(10*time.Millisecond), at.Sub(killed).Round(10*time.Millisecond))

	// x1 sends nothing: offline at the controller after 30 s.
	delivered("x1 offline", 90*time.Second, func(e webui.APIEvent) bool { return e.Kind == "node.offline" && e.Node == "x1" })
	t.Logf("x1 offline at the webhook %v after the kill", time.Since(killed).Round(time.Second))

	// x1 comes back: its link, the traffic and the node.
	x1.start()
	delivered("the internet's return to x1", 60*time.Second, failoverOf("p1", "internet:p1", "x2", "x1"))
	delivered("x1 back", 60*time.Second, func(e webui.APIEvent) bool { return e.Kind == "node.back" && e.Node == "x1" })
	recorded("the PoP's link to x1 up again", 30*time.Second, func(e webui.APIEvent) bool {
		return e.Kind == "link.up" && e.Subject == "link:p1/x1"
	}, "--kind", "link")

	rcv.mu.Lock()
	unsigned, count := rcv.unsigned, len(rcv.got)
	rcv.mu.Unlock()
	if unsigned != 0 {
		t.Errorf("%d deliveries did not verify with the secret", unsigned)
	}
	show := ctrl.mustCLI("event", "webhook", "show")
	if strings.Contains(show, secret) || !strings.Contains(show, "DELIVERED") {
		t.Errorf("webhook show:\n%s", show)
	}
	t.Logf("%d events delivered, all signed; webhook show:\n%s", count, show)
	// Nothing in the log twice: each node's events are recorded once.
	es, err := list(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range es {
		k := e.Kind + " " + e.Node + " " + e.Subject + " " + e.Data["from"] + ">" + e.Data["to"] + " " + e.Time.String()
		if seen[k]++; seen[k] > 1 {
			t.Errorf("recorded twice: %+v", e)
		}
	}
}
