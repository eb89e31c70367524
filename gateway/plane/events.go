package plane

import "time"

// Event is a state change a node saw that an operator wants to hear of (issue 16): a
// backbone link down or back, a route's exit changed. A node reports its events in
// Report.Events; the controller records them in its event log with the node's name and
// sends them to the webhook.
type Event struct {
	// Seq numbers the node's events from 1 at the start of its process; the node's sync
	// sets it, so that the controller records each once however often it is sent.
	Seq uint64 `json:"seq"`
	// At is when it happened, by the node's clock.
	At time.Time `json:"at"`
	// Kind is one of the Event… kinds (a newer node may send others).
	Kind string `json:"kind"`
	// Tenant is the ID of the tenant it concerns (Tenant.ID); 0: the network's.
	Tenant int64 `json:"tenant,omitempty"`
	// Subject names what changed, as the audit log names targets: "link:p1/x1",
	// "route:acme/10.0.0.0/8", "internet:p1".
	Subject string `json:"subject"`
	// Message says it in a sentence.
	Message string `json:"message"`
	// Data holds the details, for machines (the webhook's body carries them).
	Data map[string]string `json:"data,omitempty"`
}

// Event kinds. Nodes report the link and failover kinds; the controller records the node,
// peer and check kinds itself.
const (
	// EventLinkDown: a backbone link went Down (3 probes missed in a row).
	EventLinkDown = "link.down"
	// EventLinkUp: a link that was Down is Up again (answers for UpAfter).
	EventLinkUp = "link.up"
	// EventFailover: the exit a route's traffic (or the internet's, on a node without the
	// exit role) leaves through changed, or there is none any more.
	EventFailover = "failover"
	// EventNodeConnected: a node that joined reported for the first time.
	EventNodeConnected = "node.connected"
	// EventNodeOffline: a node sent no report for the controller's offline time (30 s).
	EventNodeOffline = "node.offline"
	// EventNodeBack: a node that was offline reported again.
	EventNodeBack = "node.back"
	// EventPeerExpiring: a peer expires within a day.
	EventPeerExpiring = "peer.expiring"
	// EventCheckDown: a check that passed failed every run of a whole minute at a node
	// (the controller tells it from the node's results); EventCheckBack: it passes there
	// again.
	EventCheckDown = "check.down"
	EventCheckBack = "check.back"
)

// MaxReportEvents is the most events one report carries: the node sends the others in the
// reports that follow.
const MaxReportEvents = 100
