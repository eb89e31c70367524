package gateway

import "github.com/popgate/popgate/gateway/plane"

// DNSLogAfter returns the queries the node's resolver logged for the tenants whose query log
// is on, numbered after seq (those the controller has), oldest first, at most
// plane.MaxReportDNSLog; none before Start or without a resolver.
func (n *Node) DNSLogAfter(seq uint64) []plane.DNSQuery {
	if n.dns == nil {
		return nil
	}
	return n.dns.LogAfter(seq, plane.MaxReportDNSLog)
}
