package webui

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway"
	"github.com/popgate/popgate/gateway/gatewaytest"
	"github.com/popgate/popgate/store"
)

// BenchmarkPeersPageRealNode is BenchmarkPeersPage on a real node whose store holds 10,000
// peers: the controller's ListPeers with live state included. Setting it up takes a while,
// so it runs only with POPGATE_BENCH_REAL=1.
func BenchmarkPeersPageRealNode(b *testing.B) {
	if os.Getenv("POPGATE_BENCH_REAL") == "" {
		b.Skip("set POPGATE_BENCH_REAL=1 to fill a real node with 10,000 peers")
	}
	ctx := context.Background()
	dir := b.TempDir()
	st, err := store.Open(ctx, store.Options{Path: filepath.Join(dir, "popgate.db")})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for _, t := range []string{"acme", "bravo", "globex"} {
		if _, err := st.AddTenant(ctx, t); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 10_000 {
		k, _ := store.GeneratePrivateKey()
		pub := k.PublicKey()
		if _, err := st.AddPeer(ctx, store.NewPeer{TenantName: []string{"acme", "bravo", "globex"}[i%3], Name: fmt.Sprintf("device-%05d", i), PublicKey: &pub, Groups: []string{"eng"}}); err != nil {
			b.Fatal(err)
		}
	}
	st.Close()
	b.Logf("10,000 peers stored in %v", time.Since(start))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n := gatewaytest.Start(b, gatewaytest.Options{Dir: dir, Gateway: gateway.Config{Interface: fmt.Sprintf("pgb%d", os.Getpid()%10000)}, Log: log})
	ui, err := NewUI(n.Ctrl, n.Store, &recAuditor{}, log)
	if err != nil {
		b.Fatal(err)
	}
	h := &uiHarness{t: b}
	h.use(ui)
	b.ResetTimer()
	// The controller's part of each page, for comparison.
	b.Run("controller-ListPeers", func(b *testing.B) {
		for b.Loop() {
			if _, err := n.Ctrl.ListPeers(ctx, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, bc := range []struct{ name, query string }{
		{"default", "/peers"},
		{"sorted-rx-page-37", "/peers?sort=-rx&page=37"},
		{"tenant", "/peers/table?tenant=acme"},
		{"dashboard", "/"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if w := h.do(owner, "GET", bc.query, nil); w.Code != http.StatusOK {
					b.Fatalf("%s: %d", bc.query, w.Code)
				}
			}
		})
	}
}
