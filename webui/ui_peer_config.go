package webui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// configPage is the data of a peer's config page: its config per region as text, download
// and QR code, and one-time links.
type configPage struct {
	Peer    control.PeerInfo
	Regions []regionConfig
	// Link is the one-time link just created; "" otherwise.
	Link        string
	LinkExpires time.Time
	LinkTTLs    []linkTTL
	// LinkBase is where links point; LinkBrowsed: it is the address the admin browsed, as
	// no public URL is set.
	LinkBase    string
	LinkBrowsed bool
}

// regionConfig is a peer's wg-quick config for the region's endpoint.
type regionConfig struct {
	Region, Endpoint string
	Config           string
	DownloadURL      string
	QRURL            string
}

// peerConfig serves GET /tenants/{tenant}/peers/{peer}/config (tenant admins: it shows the
// private key the server holds). A new peer's page leads here.
func (u *UI) peerConfig(w http.ResponseWriter, r *http.Request) {
	t, name := r.PathValue("tenant"), r.PathValue("peer")
	if !u.changeTenant(w, r, t) {
		return
	}
	p, err := u.configPageData(r, t, name)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.record(r, t, "peer.config.show", store.PeerTarget(t, name), "")
	u.render(w, r, http.StatusOK, "peer_config", view{Title: "Config of " + name, Nav: "peers", Data: p})
}

func (u *UI) configPageData(r *http.Request, t, name string) (*configPage, error) {
	ctx := r.Context()
	pi, err := u.ctrl.Peer(ctx, t, name)
	if err != nil {
		return nil, err
	}
	rcs, err := u.regionConfigs(ctx, t, name)
	if err != nil {
		return nil, err
	}
	return &configPage{Peer: pi, Regions: rcs, LinkTTLs: linkTTLs, LinkBase: u.linkBase(r), LinkBrowsed: u.publicURL == ""}, nil
}

// regionConfigs returns the peer's config for every region its tenant may use, the node's
// own first.
func (u *UI) regionConfigs(ctx context.Context, t, name string) ([]regionConfig, error) {
	rs, err := u.ctrl.ConfigRegions(ctx, t)
	if err != nil {
		return nil, err
	}
	base := peerPath(t, name) + "/config"
	out := make([]regionConfig, 0, len(rs))
	for _, rg := range rs {
		cfg, err := u.ctrl.PeerConfig(ctx, t, name, rg.Name)
		if err != nil {
			return nil, err
		}
		q := "?region=" + url.QueryEscape(rg.Name)
		out = append(out, regionConfig{
			Region: rg.Name, Endpoint: rg.Endpoint, Config: cfg,
			DownloadURL: base + "/download" + q, QRURL: base + "/qr.png" + q,
		})
	}
	return out, nil
}

// regionConfig returns the peer's config for region; the error wraps store.ErrNotFound for
// a region it has none for.
func (u *UI) regionConfig(ctx context.Context, t, name, region string) (string, error) {
	rs, err := u.ctrl.ConfigRegions(ctx, t)
	if err != nil {
		return "", err
	}
	for _, rg := range rs {
		if rg.Name == region {
			return u.ctrl.PeerConfig(ctx, t, name, region)
		}
	}
	return "", fmt.Errorf("region %q: %w", region, store.ErrNotFound)
}

// writeConfig answers with cfg as a file to save.
func writeConfig(w http.ResponseWriter, t, name, cfg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", configFileName(t, name)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", fmt.Sprint(len(cfg)))
	w.Write([]byte(cfg))
}
