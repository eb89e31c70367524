package nodesync

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// blobServer is a controller's blobs: by hash, for the nodes named, with one served
// altered.
type blobServer struct {
	mu      sync.Mutex
	blobs   map[[32]byte][]byte
	altered [32]byte
	served  int
}

func (b *blobServer) add(body string) [32]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	sum := sha256.Sum256([]byte(body))
	b.blobs[sum] = []byte(body)
	return sum
}

func (b *blobServer) blob(_ context.Context, n store.Node, sum [32]byte) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	body, ok := b.blobs[sum]
	if !ok {
		return nil, fmt.Errorf("%w: no blob", store.ErrNotFound)
	}
	b.served++
	if sum == b.altered {
		return append([]byte("evil.example.com\n"), body...), nil
	}
	return body, nil
}

func (b *blobServer) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.served
}

// TestBlob: a node fetches a blocklist content over its sync's mutual TLS, checks it against
// its hash and keeps it, so that it has it with the controller away; a node that is not a
// member gets 403; a content not its hash's is refused.
func TestBlob(t *testing.T) {
	ctx := context.Background()
	bs := &blobServer{blobs: map[[32]byte][]byte{}}
	c := &controller{st: openStore(t), src: newSource(1), blobs: bs.blob}
	c.src.st = c.st
	var err error
	if c.id, err = LoadIdentity(t.TempDir() + "/" + IdentityFileName); err != nil {
		t.Fatal(err)
	}
	c.start(t, "127.0.0.1:0", nil)
	body := "a.example.com\nads.example.com\n"
	ads := bs.add(body)

	p := newPlane()
	cl, local := joinedNode(t, c, "p1", p, nil)
	cl.cfg.Blobs = local
	got, err := cl.Blob(ctx, ads)
	if err != nil || string(got) != body {
		t.Fatalf("Blob: %q, %v", got, err)
	}
	if kept, err := local.Blob(ctx, ads); err != nil || string(kept) != body {
		t.Errorf("the node did not keep the blob: %q, %v", kept, err)
	}
	// Kept: the controller is not asked again, also when it is away.
	c.srv.Close()
	if got, err := cl.Blob(ctx, ads); err != nil || string(got) != body || bs.count() != 1 {
		t.Errorf("Blob with the controller away: %q, %v (controller asked %d times)", got, err, bs.count())
	}
	c.start(t, "127.0.0.1:0", nil)
	cl.cfg.ControllerAddr = c.addr

	// Not there, or altered on the way.
	_, err = cl.Blob(ctx, sha256.Sum256([]byte("other")))
	wantErrText(t, err, "has no blob")
	altered := bs.add("x.example.com\n")
	bs.mu.Lock()
	bs.altered = altered
	bs.mu.Unlock()
	_, err = cl.Blob(ctx, altered)
	if !errors.Is(err, ErrBlobMismatch) {
		t.Errorf("an altered blob: %v, want ErrBlobMismatch", err)
	}
	if _, err := local.Blob(ctx, altered); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the node kept an altered blob: %v", err)
	}

	// A node that is not a member: 403, as for the sync.
	stranger := testIdentity(t)
	hc := httpClient(stranger, c.id.Pin(), c.addr)
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(fmt.Sprintf("https://%s/v1/blob/%x", c.addr, ads))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a stranger's request: %s, want 403", resp.Status)
	}
	sc := &Client{cfg: ClientConfig{ControllerAddr: c.addr}, hc: hc}
	if _, err := sc.fetchBlob(ctx, ads); !errors.Is(err, ErrRevoked) {
		t.Errorf("a stranger's Blob: %v, want ErrRevoked", err)
	}
	// A bad name.
	hc2 := httpClient(cl.cfg.Identity, c.id.Pin(), c.addr)
	defer hc2.CloseIdleConnections()
	if resp, err := hc2.Get(fmt.Sprintf("https://%s/v1/blob/xyz", c.addr)); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a blob named xyz: %v, %v", resp, err)
	}
}

// TestKeptBlobs: the node drops the kept contents that the desired state it keeps no longer
// names, and all of them when it is removed.
func TestKeptBlobs(t *testing.T) {
	ctx := context.Background()
	c := newController(t, nil)
	p := newPlane()
	cl, local := joinedNode(t, c, "p1", p, nil)
	cl.cfg.Blobs = local
	a, b := sha256.Sum256([]byte("a.example.com\n")), sha256.Sum256([]byte("b.example.com\n"))
	for body, sum := range map[string][32]byte{"a.example.com\n": a, "b.example.com\n": b} {
		if err := local.SaveBlob(ctx, sum, []byte(body), 1); err != nil {
			t.Fatal(err)
		}
	}
	d := desired(2)
	d.Tenants = []plane.Tenant{{ID: 1, Name: "acme", DNS: plane.TenantDNS{Blocklists: []plane.BlocklistRef{{Name: "a", SHA256: a, Names: 1}}}}}
	c.src.set(d)
	run(t, cl)
	p.waitGen(t, 2, 5*time.Second)
	if _, err := local.Blob(ctx, a); err != nil {
		t.Errorf("the blob the state names: %v", err)
	}
	if _, err := local.Blob(ctx, b); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a blob the state does not name was kept: %v", err)
	}
	if _, _, err := c.st.RemoveNode(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	c.src.poke()
	waitFor(t, 5*time.Second, "the removed node to drop its blobs", func() bool {
		_, err := local.Blob(ctx, a)
		return errors.Is(err, store.ErrNotFound)
	})
}
