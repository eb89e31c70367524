// Package planetest is an in-memory data plane for tests of what drives one: it keeps the
// desired state it is given and reports what the test sets.
package planetest

import (
	"context"
	"sync"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// DataPlane applies nothing: Apply validates the desired state and keeps it, or fails with
// the error the test set. Report returns the report the test set, with the generation
// applied and the apply error filled in; PeerState, its peers by key. Safe for concurrent use.
type DataPlane struct {
	mu      sync.Mutex
	desired *plane.Desired
	applies int
	reports int
	fail    error
	report  plane.Report
	byKey   map[store.Key]plane.PeerState // report.Peers, indexed once by SetReport
	gen     int64
	err     string
	failed  int64
}

// Apply keeps d when it validates and no failure is set.
func (f *DataPlane) Apply(_ context.Context, d *plane.Desired) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	err := d.Validate()
	if err == nil {
		err = f.fail
	}
	if err != nil {
		f.err, f.failed = err.Error(), d.Generation
		return err
	}
	f.desired, f.gen, f.err, f.failed = d, d.Generation, "", 0
	return nil
}

// Report returns the report set with SetReport, with the outcome of the last Apply.
func (f *DataPlane) Report() plane.Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports++
	r := f.report
	r.Format, r.Generation, r.ApplyError, r.Failed = plane.Format, f.gen, f.err, f.failed
	return r
}

// Desired returns the last desired state applied, nil before the first.
func (f *DataPlane) Desired() *plane.Desired {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.desired
}

// Applies counts the calls of Apply, failed ones included.
func (f *DataPlane) Applies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies
}

// Fail makes every Apply fail with err until Fail(nil).
func (f *DataPlane) Fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

// SetReport sets what Report returns (its generation and apply error are Apply's).
func (f *DataPlane) SetReport(r plane.Report) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.report = r
	f.byKey = make(map[store.Key]plane.PeerState, len(r.Peers))
	for _, p := range r.Peers {
		f.byKey[p.PublicKey] = p
	}
}

// PeerState returns the peer with key k of the report set with SetReport.
func (f *DataPlane) PeerState(k store.Key) (plane.PeerState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.byKey[k]
	return p, ok
}

// Reports counts the calls of Report.
func (f *DataPlane) Reports() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reports
}
