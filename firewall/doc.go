// Package firewall decides which packets of a tenant may pass: policies compiled into
// per-tenant rule sets, connection tracking, and the host's iptables rules for kernel mode.
//
// # Policy files
//
// A tenant's policy is a text file of rules, one per line. A new flow is decided by the
// first rule that matches it, or by the default when none does; replies and related ICMP
// errors of a flow that was allowed pass without rules. Example:
//
//	# acme policy — first matching rule wins
//	default deny
//	allow group:eng -> 10.10.0.0/24, site:office tcp 80,443,8000-8100
//	allow group:eng -> group:servers icmp
//	deny  peer:laptop -> any udp 53
//	allow any -> 0.0.0.0/0, ::/0 any        # the internet
//	allow site:office -> group:servers tcp 22
//
// Statements:
//
//	default allow|deny
//	allow|deny SOURCES -> DESTINATIONS [PROTOCOL [PORTS]]
//
// "default" may appear once, anywhere; without it the default is deny. Everything from '#'
// to the end of a line is a comment. Blank lines and spacing do not matter, except that a
// rule is one line.
//
// SOURCES and DESTINATIONS are lists separated by "," (spaces around it are fine). An item
// is one of:
//
//	any          as a source: every peer of the tenant; as a destination: every address
//	group:NAME   the overlay addresses of the tenant's peers in group NAME
//	peer:NAME    the overlay addresses (IPv4 and IPv6) of peer NAME
//	site:NAME    the LAN prefixes of site NAME (a network behind a site connector)
//	CIDR         an IPv4 or IPv6 prefix such as 10.0.0.0/8 or fd00::/8; a bare address
//	             (10.1.2.3, fd00::1) is one host
//
// A source of any, group or peer is a peer of the tenant. Traffic arriving for peers from
// elsewhere is matched by a site or CIDR source: "allow site:office -> peer:build tcp 22"
// lets the office reach one peer, "allow 0.0.0.0/0, ::/0 -> peer:web tcp 443" lets the
// internet reach another. Names are 1-64 letters, digits, '.', '_' and '-', starting with a
// letter or digit. A CIDR must have no bits set after its length (write 10.1.2.0/24, not
// 10.1.2.3/24).
//
// PROTOCOL is tcp, udp, icmp (ICMPv4 and ICMPv6) or any (every IP protocol, the default
// when it is left out). PORTS, allowed with tcp and udp only, is a ","-separated list of
// destination ports and inclusive ranges: 80,443,8000-8100; without it every port matches.
// Source ports are not matched.
//
// Limits: 100,000 rules, 4,096 bytes per line, 256 items per list; the size of a file is the
// callers' to bound (store.MaxPolicySize). Parse reports every problem with its line,
// what is wrong and how to fix it, for example
//
//	line 3: unknown protocol "tpc": use tcp, udp, icmp or any
//	line 7: 10.1.2.3/24 has bits set after the prefix length: write 10.1.2.0/24
//
// and Compile reports groups, peers and sites the tenant does not have:
//
//	line 4: no peer of this tenant is in group "servers": add one to it (popgate peer add --group servers ...) or remove the reference
//
// Format writes a policy back in canonical form ("default" first, one space between items,
// comments kept), and Parse(Format(p)) gives p again.
//
// # Matching
//
// A rule matches a flow when the flow's source address is in SOURCES, its destination
// address in DESTINATIONS, its protocol is PROTOCOL and, for TCP and UDP with PORTS, its
// destination port is listed. Rules match addresses, so a flow gets the same verdict
// whether the gateway checks it as it leaves a peer or as it arrives for one, and a peer is
// recognised by its overlay addresses (which WireGuard's cryptokey routing vouches for).
// Compile indexes the rules so that deciding a flow does not scan them: see match_index.go.
//
// # Connection tracking
//
// Allowed flows are tracked by (tenant, protocol, addresses, ports or ICMP echo identifier)
// in a table bounded by Config.MaxFlows; when it is full, new flows are dropped and
// counted, tracked flows go on. Flows time out like Linux conntrack's defaults: TCP
// established 5 days, SYN sent 120 s, SYN received 60 s, FIN wait and TIME_WAIT 120 s,
// after a RST 10 s; UDP 30 s, 120 s once replied; ICMP echo 30 s; other protocols 600 s
// (tracked by addresses alone). A TCP flow may also start mid-stream, with an ACK from either
// end (a node restarted, a client moved to another node): it is tracked when the rules allow
// it either way round, as the connection of the end they allow. When a tenant's policy
// changes, each tracked flow is checked against the new rules on its next packet and cut if
// they deny it.
//
// Fragments: later fragments carry no ports, so they cannot be matched to a flow by
// themselves. The filter remembers each accepted first fragment (tenant, addresses,
// protocol, fragment ID) for 60 s and passes later fragments of that packet only; other
// later fragments are dropped (ReasonFragment). A later fragment that arrives before its
// first fragment is therefore dropped, and a first fragment must hold the whole transport
// header (RFC 1858).
package firewall
