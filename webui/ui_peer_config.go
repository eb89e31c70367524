package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// configPage is the data of a peer's config page: its config for one region as text,
// download and QR code, the other regions it may have one for, and one-time links.
type configPage struct {
	Peer control.PeerInfo
	// Regions are the regions the peer's tenant may use, each with its page's address; the
	// page shows the config of the Current one.
	Regions []regionChoice
	Config  regionConfig
	// Link is the one-time link just created; "" otherwise.
	Link        string
	LinkExpires time.Time
	LinkTTLs    []linkTTL
	// LinkBase is where links point; LinkBrowsed: it is the address the admin browsed, as
	// no public URL is set.
	LinkBase    string
	LinkBrowsed bool
}

// regionChoice is a region a peer's config may be for.
type regionChoice struct {
	Name, Endpoint string
	Home           bool // the controller's own
	URL            string
	Current        bool
}

// regionConfig is a peer's wg-quick config for the region's endpoint.
type regionConfig struct {
	Region, Endpoint string
	Config           string
	FileName         string // what the download is saved as
	DownloadURL      string
	QRURL            string
}

// peerConfig serves GET /tenants/{tenant}/peers/{peer}/config?region=R (tenant admins: it
// shows the private key the server holds): the config for region R, by default the
// controller's own region or, when the tenant may not use it, the first it may. A new
// peer's page leads here.
func (u *UI) peerConfig(w http.ResponseWriter, r *http.Request) {
	t, name := r.PathValue("tenant"), r.PathValue("peer")
	if !u.changeTenant(w, r, t) {
		return
	}
	p, err := u.configPageData(r, t, name, r.URL.Query().Get("region"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.record(r, t, "peer.config.show", store.PeerTarget(t, name), "region "+p.Config.Region)
	u.render(w, r, http.StatusOK, "peer_config", view{Title: "Config of " + name, Nav: "peers", Data: p})
}

// configPageData builds the config page for region ("": the tenant's default); the error
// wraps store.ErrNotFound for a region the tenant may not use.
func (u *UI) configPageData(r *http.Request, t, name, region string) (*configPage, error) {
	ctx := r.Context()
	pi, err := u.ctrl.Peer(ctx, t, name)
	if err != nil {
		return nil, err
	}
	rs, def, err := u.configRegions(ctx, t)
	if err != nil {
		return nil, err
	}
	if region == "" {
		region = def
	}
	base := peerPath(t, name) + "/config"
	p := &configPage{Peer: pi, LinkTTLs: linkTTLs, LinkBase: u.linkBase(r), LinkBrowsed: u.publicURL == ""}
	for _, rg := range rs {
		c := regionChoice{Name: rg.Name, Endpoint: rg.Endpoint, Home: rg.Home, URL: base + "?region=" + url.QueryEscape(rg.Name), Current: rg.Name == region}
		p.Regions = append(p.Regions, c)
		if c.Current {
			q := "?region=" + url.QueryEscape(rg.Name)
			p.Config = regionConfig{Region: rg.Name, Endpoint: rg.Endpoint, FileName: configNameIn(rs, t, name, rg.Name),
				DownloadURL: base + "/download" + q, QRURL: base + "/qr.png" + q}
		}
	}
	if p.Config.Region == "" {
		return nil, fmt.Errorf("region %q: %w", region, store.ErrNotFound)
	}
	if p.Config.Config, err = u.ctrl.PeerConfig(ctx, t, name, region); err != nil {
		return nil, err
	}
	return p, nil
}

// configRegions returns the regions the configs of tenant's peers may be for, the
// controller's own first, and the one they are for by default: the first. A tenant that
// does not exist has none.
func (u *UI) configRegions(ctx context.Context, tenant string) (rs []store.Region, def string, err error) {
	rs, err = u.ctrl.ConfigRegions(ctx, tenant)
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil || len(rs) == 0 {
		return nil, "", err
	}
	return rs, rs[0].Name, nil
}

// defaultRegion is the region of the config shown after creating a peer of tenant or
// replacing its key: see configRegions. "" (the controller's own) for a tenant that does not
// exist, whose peer the controller refuses anyway.
func (u *UI) defaultRegion(ctx context.Context, tenant string) (string, error) {
	_, def, err := u.configRegions(ctx, tenant)
	return def, err
}

// regionConfig returns the peer's config for region and its file name; the error wraps
// store.ErrNotFound for a region its tenant may not use (or none given).
func (u *UI) regionConfig(ctx context.Context, t, name, region string) (cfg, file string, err error) {
	rs, _, err := u.configRegions(ctx, t)
	if err != nil {
		return "", "", err
	}
	if region == "" || !slices.ContainsFunc(rs, func(rg store.Region) bool { return rg.Name == region }) {
		return "", "", fmt.Errorf("region %q: %w", region, store.ErrNotFound)
	}
	cfg, err = u.ctrl.PeerConfig(ctx, t, name, region)
	return cfg, configNameIn(rs, t, name, region), err
}

// configNameIn is the file name of the config of peer name of tenant t for region, one of
// rs (configFileNameIn: the controller's own region keeps the name without a region).
func configNameIn(rs []store.Region, t, name, region string) string {
	if i := slices.IndexFunc(rs, func(rg store.Region) bool { return rg.Name == region }); i >= 0 && rs[i].Home {
		region = ""
	}
	return configFileNameIn(t, name, region)
}

// writeConfig answers with cfg as a file named file to save.
func writeConfig(w http.ResponseWriter, file, cfg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", file))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", fmt.Sprint(len(cfg)))
	w.Write([]byte(cfg))
}
