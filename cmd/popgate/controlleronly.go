package main

import (
	"context"
	"sync"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// noDataPlane is the data plane of a node with the controller role alone (--roles
// controller): it carries no traffic and binds no socket. It takes each desired state the
// controller publishes as applied, so that the controller's status and readiness say what
// they say of any node, and reports no peers: the PoPs that joined report those.
type noDataPlane struct {
	started time.Time
	name    string
	version string
	region  string

	mu      sync.Mutex
	applied int64 // guarded by mu
}

var _ control.DataPlane = (*noDataPlane)(nil)

func newNoDataPlane(name, version, region string) *noDataPlane {
	return &noDataPlane{started: time.Now(), name: name, version: version, region: region}
}

// Apply checks d as a node would and records its generation.
func (p *noDataPlane) Apply(ctx context.Context, d *plane.Desired) error {
	if err := d.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	p.applied = d.Generation
	p.mu.Unlock()
	return nil
}

// Report says the node is up and what it applied; it has no device, peers or tenants.
func (p *noDataPlane) Report() plane.Report {
	p.mu.Lock()
	defer p.mu.Unlock()
	return plane.Report{Format: plane.Format, Generation: p.applied,
		Node: plane.NodeStatus{Name: p.name, Version: p.version, Region: p.region, StartedAt: p.started}}
}

// PeerState knows no peer: none is served here.
func (p *noDataPlane) PeerState(store.Key) (plane.PeerState, bool) { return plane.PeerState{}, false }
