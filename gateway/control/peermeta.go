package control

import (
	"context"
	"fmt"
	"time"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/store"
)

// This file holds the peer changes the web UI adds (rename, expiry) and one-time download
// links to a peer's config. Methods that take now use the caller's clock, so that one clock
// decides expiry.

// RenamePeer renames the peer old of tenant to new. Keys, addresses, groups and site stay, so
// the device is not touched. It refuses (ErrInvalid) while the tenant's policy names the peer
// (peer:old): the policy would silently stop matching it.
func (c *Controller) RenamePeer(ctx context.Context, tenant, old, new string) (PeerInfo, error) {
	if old != new {
		if err := c.policyNamesPeer(ctx, tenant, old); err != nil {
			return PeerInfo{}, err
		}
	}
	if _, err := c.store.RenamePeer(ctx, tenant, old, new); err != nil {
		return PeerInfo{}, err
	}
	c.changed(ctx)
	return c.Peer(ctx, tenant, new)
}

// policyNamesPeer returns an error wrapping ErrInvalid when the policy of tenant names peer.
func (c *Controller) policyNamesPeer(ctx context.Context, tenant, peer string) error {
	text, _, err := c.store.Policy(ctx, tenant)
	if err != nil || text == "" {
		return err
	}
	pol, err := firewall.Parse(text)
	if err != nil || pol == nil {
		return nil // a stored policy that does not parse names nothing the packet path uses
	}
	for _, r := range pol.Rules {
		for _, eps := range [][]firewall.Endpoint{r.Src, r.Dst} {
			for _, e := range eps {
				if e.Kind == firewall.EndpointPeer && e.Name == peer {
					return invalidError{fmt.Errorf("peer %q is named in the policy of tenant %q (line %d): take it out of the policy, rename the peer, then name it again", peer, tenant, r.Line)}
				}
			}
		}
	}
	return nil
}

// SetPeerExpiry sets when the peer name of tenant expires; nil: never. From then on it is
// treated like a disabled peer. The time must be in the future (ErrInvalid otherwise): to stop
// a peer now, disable it.
func (c *Controller) SetPeerExpiry(ctx context.Context, tenant, name string, at *time.Time) (PeerInfo, error) {
	if at != nil && !at.After(time.Now()) {
		return PeerInfo{}, invalidError{fmt.Errorf("expiry %s is not in the future: choose a later time, or disable the peer to stop it now", at.UTC().Format(time.RFC3339))}
	}
	if _, err := c.store.SetPeerExpiry(ctx, tenant, name, at); err != nil {
		return PeerInfo{}, err
	}
	c.changed(ctx)
	return c.Peer(ctx, tenant, name)
}

// CreateDownloadLink makes a one-time link to the config of peer of tenant, valid from now for
// validFor (at most store.MaxDownloadLinkLife), and returns it with its secret token, which
// belongs in the link and is shown once.
func (c *Controller) CreateDownloadLink(ctx context.Context, tenant, peer, createdBy string, now time.Time, validFor time.Duration) (store.DownloadLink, string, error) {
	return c.store.CreateDownloadLink(ctx, tenant, peer, createdBy, now, now.Add(validFor))
}

// DownloadLink returns the link of token when it is still usable at now, without using it
// (for a page that asks before downloading, so that link previews do not spend it).
func (c *Controller) DownloadLink(ctx context.Context, token string, now time.Time) (store.DownloadLink, error) {
	return c.store.DownloadLinkByToken(ctx, token, now)
}

// RedeemDownloadLink uses the link of token at now and returns it with the peer's wg-quick
// config for region ("": the controller's own). Only one call per link succeeds; unknown,
// expired and used links all give the same error, wrapping store.ErrNotFound. A region the
// peer's tenant is not allowed in is refused and leaves the link usable.
func (c *Controller) RedeemDownloadLink(ctx context.Context, token string, now time.Time, region string) (store.DownloadLink, string, error) {
	l, err := c.store.DownloadLinkByToken(ctx, token, now)
	if err != nil {
		return store.DownloadLink{}, "", err
	}
	cfg, err := c.PeerConfig(ctx, l.TenantName, l.PeerName, region) // before using it up: a failure leaves the link valid
	if err != nil {
		return store.DownloadLink{}, "", err
	}
	if err := c.store.UseDownloadLink(ctx, l.ID, now); err != nil {
		return store.DownloadLink{}, "", err
	}
	return l, cfg, nil
}
