package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/wgmux"
	"github.com/popgate/popgate/store"
)

// TestNodeRunsChecks: the appliance runs the checks its controller publishes, reports them,
// and the controller keeps what they found: an HTTP check added through the controller has
// a result in its summary within a report's way of its first run.
func TestNodeRunsChecks(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	n := startNode(t, Config{})
	if _, err := n.ctrl.AddCheck(ctx, control.AddCheckRequest{Name: "web", Kind: plane.CheckHTTP, Target: srv.URL + "/health", Expect: "204", Every: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		ci, err := n.ctrl.Check(ctx, "", "web")
		if err != nil {
			t.Fatal(err)
		}
		if ci.Summary.Day.OK > 0 {
			if ci.Summary.Day.Failed != 0 || len(ci.Summary.Latest) != 1 || ci.Summary.Latest[0].Detail != "204 No Content" || ci.Summary.Latest[0].Node != "controller" {
				t.Fatalf("summary: %+v", ci.Summary)
			}
			t.Logf("the first result was kept %s after the check was added (first run within 5 s, then the controller reads its node every 10 s)", time.Since(start).Round(100*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no result kept after 30 s; the node reports %+v", n.Report().Checks)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rs := n.Report().Checks; len(rs) == 0 || rs[0].OK == 0 {
		t.Fatalf("the node's report: %+v", rs)
	}
	// Removed: the node stops running it and forgets it.
	if err := n.ctrl.RemoveCheck(ctx, "", "web"); err != nil {
		t.Fatal(err)
	}
	if rs := n.Report().Checks; len(rs) != 0 {
		t.Fatalf("a removed check is still reported: %+v", rs)
	}
}

// TestIdleNodeAnswersMonitors: a node without any tenant's device (so no device's goroutine
// reads its socket) still answers another node's handshake check.
func TestIdleNodeAnswersMonitors(t *testing.T) {
	n := startNode(t, Config{})
	checker, err := store.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	n.mux.SetMonitors([]store.Key{checker.PublicKey()})
	h, err := wgmux.NewHandshake(checker, n.key.PublicKey(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", n.Config().ListenPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(h.Initiation()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 200)
	k, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer from an idle node: %v", err)
	}
	if err := h.Response(buf[:k]); err != nil {
		t.Fatalf("its answer: %v", err)
	}
}
