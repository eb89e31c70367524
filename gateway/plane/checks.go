package plane

import (
	"cmp"
	"fmt"
	"net/netip"
	"time"

	"github.com/popgate/popgate/store"
)

// Check kinds (Check.Kind).
const (
	// CheckDNS resolves Target, a DNS name, through the node's upstream resolvers; it passes
	// when there is an answer (holding Expect, an address, when set).
	CheckDNS = store.CheckDNS
	// CheckHTTP fetches Target, an http(s) URL, without following redirects; it passes when
	// the status is Expect (default 200). Its latency is the time to the first byte.
	CheckHTTP = store.CheckHTTP
	// CheckHandshake sends a WireGuard handshake initiation to Target, a region's public
	// endpoint (host:port), from the node's backbone key to PublicKey, the region's; it
	// passes when a handshake response that opens with the keys arrives.
	CheckHandshake = store.CheckHandshake
)

// Bounds of the checks a Desired gives a node and of the results a Report carries.
const (
	// MaxChecks is the most checks one node runs.
	MaxChecks = 1000
	// MaxCheckResults is the most results one report carries (the newest minutes first).
	MaxCheckResults = 500
	// MinCheckEvery and MaxCheckEvery bound Check.Every as a node takes it (the store's
	// lower bound is higher: this one is for tests).
	MinCheckEvery = time.Second
	MaxCheckEvery = store.MaxCheckEvery
)

// Check is one check this node runs, as often as Every, and reports in Report.Checks.
type Check struct {
	ID int64 `json:"id"`
	// Tenant is the tenant whose check it is; 0: the operator's. A tenant's check reaches
	// only public addresses (store.PublicAddr), whatever its name resolves to.
	Tenant int64  `json:"tenant,omitempty"`
	Kind   string `json:"kind"`
	Target string `json:"target"`
	// Expect is an address the DNS answer must hold ("": any answer), or the HTTP status
	// ("": 200).
	Expect string `json:"expect,omitempty"`
	// Every is the interval between runs, in seconds.
	Every int `json:"every_s"`
	// PublicKey is a handshake check's responder: the region's public key.
	PublicKey store.Key `json:"public_key,omitzero"`
}

// Interval is c's Every as a duration.
func (c *Check) Interval() time.Duration { return time.Duration(c.Every) * time.Second }

// CheckResult is what the reporting node saw of one check in one minute (its runs that
// started in it).
type CheckResult struct {
	Check int64 `json:"check"` // Check.ID
	// Minute is the minute's start in the node's clock.
	Minute time.Time `json:"minute"`
	OK     int       `json:"ok,omitempty"`
	Failed int       `json:"failed,omitempty"`
	// LatencyP50 and LatencyMax are the median and the longest latency of the runs that
	// passed.
	LatencyP50 time.Duration `json:"latency_p50_ns,omitempty"`
	LatencyMax time.Duration `json:"latency_max_ns,omitempty"`
	// Error is the minute's last failure, Detail the last run's answer (addresses, a status).
	Error  string `json:"error,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// validateChecks checks d.Checks: at most MaxChecks, IDs unique and positive, known kinds,
// targets and expectations of their kind's form, intervals within bounds, a handshake
// check's endpoint and public key.
func (d *Desired) validateChecks(tenants map[int64]bool) error {
	if len(d.Checks) > MaxChecks {
		return invalid("%d checks, at most %d", len(d.Checks), MaxChecks)
	}
	ids := make(map[int64]bool, len(d.Checks))
	for i := range d.Checks {
		c := &d.Checks[i]
		at := fmt.Sprintf("check %d (%s %.80q)", c.ID, c.Kind, c.Target)
		switch {
		case c.ID <= 0 || ids[c.ID]:
			return invalid("%s: the id is not a unique positive number", at)
		case c.Tenant < 0 || c.Tenant > 0 && !tenants[c.Tenant]:
			return invalid("%s: tenant %d is not a tenant of the state", at, c.Tenant)
		case c.Interval() < MinCheckEvery || c.Interval() > MaxCheckEvery:
			return invalid("%s: every %ds is not between %s and %s", at, c.Every, MinCheckEvery, MaxCheckEvery)
		}
		if c.Kind == CheckHandshake {
			if err := store.ValidateEndpoint(c.Target); err != nil {
				return invalid("%s: %v", at, err)
			}
			if c.PublicKey.IsZero() {
				return invalid("%s: no public key to shake hands with", at)
			}
		} else if err := store.ValidateCheck(c.Kind, c.Target, c.Expect, c.Tenant != 0); err != nil {
			return invalid("%s: %v", at, err)
		}
		ids[c.ID] = true
	}
	return nil
}

// CheckAddrAllowed reports whether check c may reach address a: a tenant's check only public
// addresses (store.PublicAddr), the operator's any.
func CheckAddrAllowed(c *Check, a netip.Addr) bool { return c.Tenant == 0 || store.PublicAddr(a) }

// CompareCheckResults orders results newest minute first, then by check: the order in which
// a report keeps them when it has more than MaxCheckResults.
func CompareCheckResults(a, b CheckResult) int {
	if c := b.Minute.Compare(a.Minute); c != 0 {
		return c
	}
	return cmp.Compare(a.Check, b.Check)
}
