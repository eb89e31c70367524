package control

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// Checks (issue 16). The controller decides which node runs which check, from the published
// snapshot, and puts them in each node's Desired.Checks: a DNS or HTTP check on the PoPs its
// from names (and only in regions its tenant may use), each region's handshake check on
// every PoP of the other regions that has a backbone key (the key it initiates with, which
// the region's PoPs know from their Desired.Nodes). Nodes report what they found a minute
// at a time (Report.Checks); the controller keeps it in the store, at most once per change.

// AddCheckRequest is a DNS or HTTP check to add.
type AddCheckRequest struct {
	// Tenant is the tenant's name; "" for the operator's check.
	Tenant string
	Name   string
	Kind   string // plane.CheckDNS or plane.CheckHTTP
	Target string
	Expect string
	// Every: 0 is store.DefaultCheckEvery.
	Every time.Duration
	// From: "" is every PoP (see store.ParseCheckFrom).
	From string
}

// CheckInfo is a check, where it runs and what it found.
type CheckInfo struct {
	store.NetCheck
	// Runners are the names of the nodes that run it, as last published.
	Runners []string
	Summary CheckSummary
}

// CheckSummary is what a check found lately, every node's runs together.
type CheckSummary struct {
	// Day and Week are the last 24 hours and 7 days.
	Day, Week CheckWindow
	// Latest is each node's latest minute, by node name.
	Latest []CheckLatest
}

// CheckWindow is a check's runs over a stretch of time.
type CheckWindow struct {
	OK, Failed int64
	// P50 and P95 are percentiles of the minutes' median latencies (of the runs that
	// passed); zero without a pass.
	P50, P95 time.Duration
}

// Uptime is the share of runs that passed, in percent; -1 without a run.
func (w CheckWindow) Uptime() float64 {
	if w.OK+w.Failed == 0 {
		return -1
	}
	return 100 * float64(w.OK) / float64(w.OK+w.Failed)
}

// CheckLatest is one node's latest minute of a check.
type CheckLatest struct {
	Node string
	store.CheckResult
}

// OwnNodeName is the name the controller's own node goes by in checks' from ("node:NAME"),
// their results and its events: its backbone name, the one the other nodes know it by
// (default "controller").
func (c *Controller) OwnNodeName() string { return cmp.Or(c.cfg.Backbone.Name, "controller") }

// checkNode is a node as the assignment of checks sees it.
type checkNode struct {
	id     uint32
	name   string
	region string
	pop    bool
	// handshakes: it has a backbone key the other nodes know, to initiate handshakes with.
	handshakes bool
}

// ownCheckNode is the controller's own node.
func (c *Controller) ownCheckNode() checkNode {
	return checkNode{id: plane.ControllerNode, name: c.OwnNodeName(), region: c.cfg.Region,
		pop: slices.Contains(c.cfg.Roles, plane.RolePoP), handshakes: c.cfg.Backbone.on()}
}

// joinedCheckNode is joined node n.
func joinedCheckNode(n store.Node) checkNode {
	return checkNode{id: nodeID(n), name: n.Name, region: n.Region, pop: slices.Contains(nodeRoles(n.Roles), plane.RolePoP),
		handshakes: !n.BackbonePublicKey.IsZero() && n.BackboneEndpoint != "" && nodeID(n) <= plane.MaxNodeID}
}

// checkNodes are every node of snap: the controller's own, then the joined ones.
func (c *Controller) checkNodes(snap *store.Snapshot) []checkNode {
	out := []checkNode{c.ownCheckNode()}
	for _, n := range snap.Nodes {
		out = append(out, joinedCheckNode(n))
	}
	return out
}

// runs reports whether node n runs check ck of snap.
func runs(snap *store.Snapshot, ck *store.NetCheck, n checkNode) bool {
	if ck.Kind == store.CheckHandshake {
		return n.pop && n.handshakes && n.region != "" && n.region != ck.Region
	}
	from, err := store.ParseCheckFrom(ck.From)
	if err != nil {
		return false
	}
	named := slices.Contains(from.Nodes, n.name)
	if !named && !(n.pop && (from.All || slices.Contains(from.Regions, n.region))) {
		return false
	}
	if rs := snap.TenantRegions[ck.TenantID]; !ck.Global() && len(rs) > 0 && !slices.Contains(rs, n.region) {
		return false // a tenant's check runs only where the tenant may go
	}
	return true
}

// checksFor returns the checks node n runs.
func checksFor(snap *store.Snapshot, n checkNode) []plane.Check {
	var out []plane.Check
	for i := range snap.Checks {
		ck := &snap.Checks[i]
		if !runs(snap, ck, n) {
			continue
		}
		pc := plane.Check{ID: ck.ID, Tenant: ck.TenantID, Kind: ck.Kind, Target: ck.Target, Expect: ck.Expect, Every: int(ck.Every / time.Second)}
		if ck.Kind == store.CheckHandshake {
			pc.PublicKey = ck.RegionKey
		}
		out = append(out, pc)
		if len(out) == plane.MaxChecks {
			break
		}
	}
	return out
}

// AddCheck adds a DNS or HTTP check and publishes it: the nodes its from names run it from
// their next desired state. A from that names a region or node that does not exist, or a
// region the tenant may not use, is refused (ErrInvalid), as is whatever the store refuses.
func (c *Controller) AddCheck(ctx context.Context, req AddCheckRequest) (CheckInfo, error) {
	snap, err := c.snapshot(ctx)
	if err != nil {
		return CheckInfo{}, err
	}
	from, err := store.ParseCheckFrom(req.From)
	if err != nil {
		return CheckInfo{}, err
	}
	var allowed []string
	if req.Tenant != "" {
		t, err := c.store.Tenant(ctx, req.Tenant)
		if err != nil {
			return CheckInfo{}, err
		}
		allowed = snap.TenantRegions[t.ID]
	}
	for _, r := range from.Regions {
		if r != c.cfg.Region && !slices.ContainsFunc(snap.Regions, func(x store.Region) bool { return x.Name == r }) {
			return CheckInfo{}, invalidError{fmt.Errorf("there is no region %s: list regions with 'popgate region list'", r)}
		}
		if len(allowed) > 0 && !slices.Contains(allowed, r) {
			return CheckInfo{}, invalidError{fmt.Errorf("tenant %s may not use region %s (only %s): its checks run only there", req.Tenant, r, strings.Join(allowed, ", "))}
		}
	}
	for _, n := range from.Nodes {
		if n != c.OwnNodeName() && !slices.ContainsFunc(snap.Nodes, func(x store.Node) bool { return x.Name == n }) {
			return CheckInfo{}, invalidError{fmt.Errorf("there is no node %s: list nodes with 'popgate node list' (this controller's own is %s)", n, c.OwnNodeName())}
		}
	}
	ck, err := c.store.AddNetCheck(ctx, store.NewNetCheck{Tenant: req.Tenant, Name: req.Name, Kind: req.Kind, Target: req.Target,
		Expect: req.Expect, Every: req.Every, From: req.From})
	if err != nil {
		return CheckInfo{}, err
	}
	c.changed(ctx)
	v, err := c.checkView(ctx)
	if err != nil {
		return CheckInfo{}, err
	}
	return c.checkInfo(ctx, v, ck, false)
}

// RemoveCheck removes tenant's check name ("" for the operator's) with its results; the nodes
// stop running it with their next desired state.
func (c *Controller) RemoveCheck(ctx context.Context, tenant, name string) error {
	if err := c.store.RemoveNetCheck(ctx, tenant, name); err != nil {
		return err
	}
	c.changed(ctx)
	return nil
}

// Checks returns the checks of tenant ("": every check) with where they run and what they
// found in the last 24 hours (their Summary's Week is left empty): the operator's (the
// regions' first), then each tenant's. The error wraps store.ErrNotFound for an unknown
// tenant.
func (c *Controller) Checks(ctx context.Context, tenant string) ([]CheckInfo, error) {
	if tenant != "" {
		if _, err := c.store.Tenant(ctx, tenant); err != nil {
			return nil, err
		}
	}
	cs, err := c.store.NetChecks(ctx)
	if err != nil {
		return nil, err
	}
	v, err := c.checkView(ctx)
	if err != nil {
		return nil, err
	}
	var out []CheckInfo
	for _, ck := range cs {
		if tenant != "" && ck.TenantName != tenant {
			continue
		}
		ci, err := c.checkInfo(ctx, v, ck, false)
		if err != nil {
			return nil, err
		}
		out = append(out, ci)
	}
	return out, nil
}

// Check returns tenant's check name ("" for the operator's, "region:NAME" for a region's)
// with where it runs and what it found in the last 24 hours and 7 days.
func (c *Controller) Check(ctx context.Context, tenant, name string) (CheckInfo, error) {
	ck, err := c.store.NetCheck(ctx, tenant, name)
	if err != nil {
		return CheckInfo{}, err
	}
	v, err := c.checkView(ctx)
	if err != nil {
		return CheckInfo{}, err
	}
	return c.checkInfo(ctx, v, ck, true)
}

// CheckHistory returns check id's results since since, every node's together, in bins of
// width.
func (c *Controller) CheckHistory(ctx context.Context, id int64, since time.Time, width time.Duration) ([]store.CheckBin, error) {
	return c.store.CheckBins(ctx, id, since, width)
}

// checkView is what checkInfo needs of the published network: read once for all the checks
// of a listing.
type checkView struct {
	snap  *store.Snapshot
	nodes []checkNode
	names map[uint32]string
}

func (c *Controller) checkView(ctx context.Context) (checkView, error) {
	snap, err := c.snapshot(ctx)
	if err != nil {
		return checkView{}, err
	}
	return checkView{snap: snap, nodes: c.checkNodes(snap), names: c.nodeNames(snap)}, nil
}

// checkInfo is ck with its runners and summary (week: over 7 days too, else 24 hours).
func (c *Controller) checkInfo(ctx context.Context, v checkView, ck store.NetCheck, week bool) (CheckInfo, error) {
	ci := CheckInfo{NetCheck: ck}
	for _, n := range v.nodes {
		if runs(v.snap, &ck, n) {
			ci.Runners = append(ci.Runners, n.name)
		}
	}
	now := time.Now()
	since := now.Add(-24 * time.Hour)
	if week {
		since = now.Add(-store.CheckRetention)
	}
	rs, err := c.store.CheckResults(ctx, ck.ID, since)
	if err != nil {
		return ci, err
	}
	ci.Summary = summarize(rs, now, v.names)
	return ci, nil
}

// nodeNames names every node of snap by backbone ID.
func (c *Controller) nodeNames(snap *store.Snapshot) map[uint32]string {
	names := map[uint32]string{plane.ControllerNode: c.OwnNodeName()}
	for _, n := range snap.Nodes {
		names[nodeID(n)] = n.Name
	}
	return names
}

// summarize sums up results (oldest first) at now: the last 24 hours, all of them (the
// week, when they go back that far), and each node's latest minute.
func summarize(rs []store.CheckResult, now time.Time, names map[uint32]string) CheckSummary {
	var s CheckSummary
	dayStart := now.Add(-24 * time.Hour)
	var day, week []time.Duration
	latest := map[uint32]store.CheckResult{}
	for _, r := range rs {
		s.Week.OK += int64(r.OK)
		s.Week.Failed += int64(r.Failed)
		if r.OK > 0 {
			week = append(week, r.LatencyP50)
		}
		if !r.Minute.Before(dayStart) {
			s.Day.OK += int64(r.OK)
			s.Day.Failed += int64(r.Failed)
			if r.OK > 0 {
				day = append(day, r.LatencyP50)
			}
		}
		latest[r.Node] = r
	}
	s.Day.P50, s.Day.P95 = percentiles(day)
	s.Week.P50, s.Week.P95 = percentiles(week)
	for id, r := range latest {
		name := names[id]
		if name == "" {
			name = fmt.Sprintf("node #%d (removed)", id)
		}
		s.Latest = append(s.Latest, CheckLatest{Node: name, CheckResult: r})
	}
	slices.SortFunc(s.Latest, func(a, b CheckLatest) int { return strings.Compare(a.Node, b.Node) })
	return s
}

// percentiles returns the median and the 95th percentile of ds (nearest rank); ds is sorted.
func percentiles(ds []time.Duration) (p50, p95 time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	rank := func(p int) time.Duration { return ds[(p*len(ds)+99)/100-1] }
	return rank(50), rank(95)
}

// checkResults takes the nodes' results to the store: a queue that NodeReported fills
// without waiting, and a goroutine (resultsLoop) that writes what changed and prunes what
// is old. Only that goroutine touches written and trends.
type checkResults struct {
	queue   chan checkBatch
	dropped atomic.Uint64 // batches dropped because the queue was full

	// written is what was last written of each check, node and minute, so that a minute
	// a node reports again unchanged costs no write.
	written map[resultKey]plane.CheckResult
	// trends are each check's state at each node as its events last told it
	// (checkEvents).
	trends map[trendKey]trend
}

func newCheckResults() checkResults {
	return checkResults{queue: make(chan checkBatch, checkQueue), written: map[resultKey]plane.CheckResult{}, trends: map[trendKey]trend{}}
}

// trendKey is one check at one node.
type trendKey struct {
	check int64
	node  uint32
}

// trend is a check's state at a node: down (every run of a whole minute failed) or not, as
// of minute (Unix minutes).
type trend struct {
	down   bool
	minute int64
}

type checkBatch struct {
	node    uint32
	results []plane.CheckResult
}

type resultKey struct {
	check  int64
	node   uint32
	minute int64
}

// checkQueue bounds the reports waiting to be written: a slow disk drops reports' results
// rather than hold up the node sync (the next reports repeat their minutes).
const checkQueue = 64

// pruneEvery is how often results older than store.CheckRetention are deleted.
const pruneEvery = time.Hour

// queueResults hands node's results to the writer; it never waits. Results for checks the
// node was not given are dropped: a node speaks only for itself.
func (c *Controller) queueResults(node checkNode, rs []plane.CheckResult) {
	if len(rs) == 0 {
		return
	}
	if len(rs) > plane.MaxCheckResults {
		rs = rs[:plane.MaxCheckResults]
	}
	rs = slices.Clone(rs) // NodeReported may not keep the report
	if node.id != plane.ControllerNode {
		snap := c.read.Load()
		if snap == nil {
			return
		}
		given := map[int64]bool{}
		for _, ck := range checksFor(snap, node) {
			given[ck.ID] = true
		}
		rs = slices.DeleteFunc(rs, func(r plane.CheckResult) bool { return !given[r.Check] })
	}
	select {
	case c.results.queue <- checkBatch{node: node.id, results: rs}:
	default:
		if c.results.dropped.Add(1) == 1 {
			c.log.Warn("check results are coming faster than the database takes them: some are dropped (the nodes report their minutes again)")
		}
	}
}

// resultsLoop writes the queued results and prunes old ones until the controller closes.
func (c *Controller) resultsLoop() {
	defer c.wg.Done()
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	c.pruneResults()
	for {
		select {
		case <-c.closing:
			return
		case b := <-c.results.queue:
			c.writeResults(b)
		case <-prune.C:
			c.pruneResults()
		}
	}
}

func (c *Controller) pruneResults() {
	n, err := c.store.PruneCheckResults(context.Background())
	if err != nil {
		c.log.Warn("prune old check results", "err", err)
		return
	}
	if n > 0 {
		c.log.Debug("pruned old check results", "rows", n)
	}
	// Forget what was written of minutes no node reports any more, and the trends of
	// checks removed.
	oldest := time.Now().Add(-time.Hour).Unix() / 60
	maps.DeleteFunc(c.results.written, func(k resultKey, _ plane.CheckResult) bool { return k.minute < oldest })
	if snap := c.read.Load(); snap != nil {
		live := make(map[int64]bool, len(snap.Checks))
		for _, ck := range snap.Checks {
			live[ck.ID] = true
		}
		maps.DeleteFunc(c.results.trends, func(k trendKey, _ trend) bool { return !live[k.check] })
	}
}

// writeResults stores the results of b that changed since they were last written.
func (c *Controller) writeResults(b checkBatch) {
	var out []store.CheckResult
	for _, r := range b.results {
		k := resultKey{check: r.Check, node: b.node, minute: r.Minute.Unix() / 60}
		if old, ok := c.results.written[k]; ok && sameResult(old, r) {
			continue
		}
		c.results.written[k] = r
		out = append(out, store.CheckResult{Check: r.Check, Node: b.node, Minute: r.Minute, OK: r.OK, Failed: r.Failed,
			LatencyP50: r.LatencyP50, LatencyMax: r.LatencyMax, Error: r.Error, Detail: r.Detail})
	}
	c.checkEvents(b)
	if err := c.store.RecordCheckResults(context.Background(), out); err != nil {
		c.log.Warn("record check results", "node", b.node, "err", err)
		for _, r := range b.results { // try again when the node reports them again
			delete(c.results.written, resultKey{check: r.Check, node: b.node, minute: r.Minute.Unix() / 60})
		}
	}
}

// checkEvents tells, as events, of each check in b that went down at its node (every run
// of a whole minute failed after a minute in which one passed) or came back (a run passed
// after it was down). Only whole minutes count (those before the current one), so a check
// that fails one run of several in a minute is no event, and a minute the node reports
// again is judged once. A check's first minute seen at a node (since the controller
// started) is an event only when it is down. Runs on the writer's goroutine.
func (c *Controller) checkEvents(b checkBatch) {
	snap := c.read.Load()
	if snap == nil || len(b.results) == 0 {
		return
	}
	current := time.Now().Unix() / 60
	rs := slices.Clone(b.results)
	slices.SortFunc(rs, func(x, y plane.CheckResult) int { return x.Minute.Compare(y.Minute) })
	var names map[uint32]string
	for _, r := range rs {
		m := r.Minute.Unix() / 60
		if m >= current || r.OK+r.Failed == 0 {
			continue
		}
		k := trendKey{r.Check, b.node}
		old, seen := c.results.trends[k]
		if seen && m <= old.minute {
			continue
		}
		down := r.OK == 0
		c.results.trends[k] = trend{down: down, minute: m}
		if seen && old.down == down || !seen && !down {
			continue
		}
		i := slices.IndexFunc(snap.Checks, func(ck store.NetCheck) bool { return ck.ID == r.Check })
		if i < 0 {
			continue // removed meanwhile
		}
		if names == nil {
			names = c.nodeNames(snap)
		}
		c.queueEvent(checkEvent(&snap.Checks[i], names[b.node], r, down))
	}
}

// checkEvent is the event of check ck going down (or back) at node, from its minute r.
func checkEvent(ck *store.NetCheck, node string, r plane.CheckResult, down bool) store.Event {
	what := "check " + ck.Name
	if ck.TenantName != "" {
		what = "check " + ck.TenantName + "/" + ck.Name
	}
	if ck.Kind == store.CheckHandshake {
		what = "region " + ck.Region + "'s endpoint"
	}
	e := store.Event{At: r.Minute.Add(time.Minute), Kind: plane.EventCheckBack, Node: node, Tenant: ck.TenantName,
		Subject: store.CheckTarget(ck.TenantName, ck.Name),
		Data:    map[string]string{"kind": ck.Kind, "target": ck.Target, "minute": r.Minute.UTC().Format(time.RFC3339)}}
	if down {
		e.Kind = plane.EventCheckDown
		e.Message = fmt.Sprintf("%s fails from %s: %s", what, node, r.Error)
		e.Data["error"] = r.Error
	} else {
		e.Message = fmt.Sprintf("%s passes again from %s", what, node)
		if r.Detail != "" {
			e.Data["detail"] = r.Detail
		}
	}
	return e
}

// sameResult reports whether a and b say the same.
func sameResult(a, b plane.CheckResult) bool {
	am, bm := a.Minute, b.Minute
	a.Minute, b.Minute = time.Time{}, time.Time{}
	return a == b && am.Equal(bm)
}

// ownCheckReport reads the controller's own node's check results (every ownChecksEvery)
// while it runs checks.
func (c *Controller) ownCheckReport(time.Time) {
	if !c.ownChecks.Load() {
		return
	}
	rep := c.dp.Report()
	c.queueResults(c.ownCheckNode(), rep.Checks)
}

// ownChecksEvery is how often the controller reads its own node's check results (a joined
// node reports every 5 s).
const ownChecksEvery = 10 * time.Second

// OwnLinks returns the controller's own node's backbone links as its probes see them; none
// when it runs no backbone.
func (c *Controller) OwnLinks() []plane.LinkState {
	if !c.cfg.Backbone.on() {
		return nil
	}
	return c.dp.Report().Links
}

// ReportedMinutes returns, by backbone ID, in how many minutes since since each node
// reported a check result: how long it ran and reached the controller, for a node that runs
// checks.
func (c *Controller) ReportedMinutes(ctx context.Context, since time.Time) (map[uint32]int, error) {
	return c.store.NodeMinutes(ctx, since)
}
