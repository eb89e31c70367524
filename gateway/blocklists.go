package gateway

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/popgate/popgate/gateway/blocklist"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/resolver"
)

// Backoff of a blocklist content that failed to load: from the first to the last, doubling.
const (
	blobRetryFirst = 2 * time.Second
	blobRetryLast  = time.Minute
)

// blocklists gives the resolver each tenant's blocklists. The desired state names them by
// the hash of their content (plane.TenantDNS); the contents come from Config.Blobs on a
// goroutine of their own (one from the controller may take a while), each held once as a
// blocklist.Set however many tenants list it, and dropped when no tenant does. A content
// that fails to load is tried again, backing off, while it is wanted; meanwhile the tenant's
// other lists are in force. Applies never wait for a content.
type blocklists struct {
	blobs func(ctx context.Context, sum [32]byte) ([]byte, error)
	dns   *resolver.Resolver
	log   *slog.Logger
	// kick wakes the loader: the lists wanted changed.
	kick chan struct{}

	mu sync.Mutex
	// want are the contents each tenant lists, by tenant ID (in its lists' order); sets
	// the contents loaded. Guarded by mu.
	want map[int64][]plane.Digest
	sets map[plane.Digest]*blocklist.Set
}

func newBlocklists(blobs func(context.Context, [32]byte) ([]byte, error), dns *resolver.Resolver, log *slog.Logger) *blocklists {
	return &blocklists{blobs: blobs, dns: dns, log: log, kick: make(chan struct{}, 1),
		want: map[int64][]plane.Digest{}, sets: map[plane.Digest]*blocklist.Set{}}
}

// set takes the tenants' lists of a desired state: the resolver gets at once the loaded
// contents of each tenant's lists, and the loader those missing.
func (b *blocklists) set(tenants []plane.Tenant) {
	want := map[int64][]plane.Digest{}
	for _, t := range tenants {
		for _, r := range t.DNS.Blocklists {
			want[t.ID] = append(want[t.ID], r.SHA256)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if maps.EqualFunc(want, b.want, slices.Equal) {
		return
	}
	b.want = want
	used := map[plane.Digest]bool{}
	for _, ds := range want {
		for _, d := range ds {
			used[d] = true
		}
	}
	for d := range b.sets {
		if !used[d] {
			delete(b.sets, d) // no tenant lists it any more: its memory goes
		}
	}
	b.publishLocked()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// publishLocked gives the resolver every tenant's loaded lists. Must hold mu.
func (b *blocklists) publishLocked() {
	out := make(map[int64]resolver.Blocklist, len(b.want))
	for id, ds := range b.want {
		var u blocklist.Union
		for _, d := range ds {
			if s := b.sets[d]; s != nil && !slices.Contains(u, s) {
				u = append(u, s)
			}
		}
		if len(u) > 0 {
			out[id] = u
		}
	}
	b.dns.SetBlocklists(out)
}

// missing returns the contents wanted and not loaded.
func (b *blocklists) missing() []plane.Digest {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []plane.Digest
	for _, ds := range b.want {
		for _, d := range ds {
			if b.sets[d] == nil && !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	return out
}

// run loads the missing contents until ctx ends.
func (b *blocklists) run(ctx context.Context) {
	retry := blobRetryFirst
	for {
		failed := false
		for _, d := range b.missing() {
			if ctx.Err() != nil {
				return
			}
			if !b.load(ctx, d) {
				failed = true
			}
		}
		var wait <-chan time.Time
		if failed {
			wait = time.After(retry)
			retry = min(2*retry, blobRetryLast)
		}
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
			retry = blobRetryFirst
		case <-wait:
		}
	}
}

// load loads content d and publishes it when it is still wanted; false when it failed.
func (b *blocklists) load(ctx context.Context, d plane.Digest) bool {
	start := time.Now()
	body, err := b.blobs(ctx, d)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("a blocklist's content is not here yet: the tenants that list it are served without it meanwhile", "sha256", d.String(), "err", err)
		}
		return false
	}
	s, err := blocklist.Load(body, d)
	if err != nil {
		b.log.Error("a blocklist's content is corrupt: the tenants that list it are served without it", "sha256", d.String(), "err", err)
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	wanted := false
	for _, ds := range b.want {
		wanted = wanted || slices.Contains(ds, d)
	}
	if !wanted {
		return true
	}
	b.sets[d] = s
	b.publishLocked()
	b.log.Info("a blocklist is in force", "sha256", d.String(), "names", s.Len(), "bytes", s.Size(), "took", time.Since(start).Round(time.Millisecond))
	return true
}
