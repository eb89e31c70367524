// Package bench is `make bench`: popgate against stock wireguard-go in network namespaces.
//
// TestBench builds one testbed topology (cmd/internal/testbed) for each of three gateways —
// the baseline (upstream wireguard-go server, kernel forwarding, MASQUERADE), popgate with
// the userspace exit and popgate with the kernel exit — and an upstream wireguard-go client
// for each. Every case runs on the three in turn, several rounds, rotating which goes first;
// the medians, every run and the ratios to the baseline go between the bench markers of
// BENCHMARKS.md, with the machine and the versions. Cases: TCP and UDP throughput (iperf3),
// latency (ping), handshakes per second (a Go load generator speaking Noise IK with
// thousands of client keys), a handshake flood (cmd/internal/hsflood) during which a new stock
// client starts, scale (100,000 stored peers) and CPU profiles of popgate serve
// (POPGATE_CPUPROFILE).
//
// The two-hop case (phase twohop, twohop_test.go; issue 14) has three gateways of its own,
// each on a testbed.Network (wan, backbone and internet bridges): client → PoP → backbone →
// exit → the Internet host. popgate's is a controller alone (--roles controller), a PoP
// joined with --roles pop and an exit joined with --roles exit in the PoP's region, both
// with --backbone-endpoint, the exit in kernel or in userspace exit mode; the tenant's
// default route (via internet) goes over the backbone to that exit, and the policy of the
// single hop is enforced at the PoP. The baseline is the same two hops from stock parts:
// upstream wireguard-go in the first server, kernel forwarding into a WireGuard tunnel
// (a second wireguard-go) to the exit, whose wireguard-go and kernel forwarding with
// MASQUERADE reach the host. TCP upload and download with 1 and 4 streams, UDP packets per
// second with 64-byte payloads, and idle and loaded latency run on the three in turn; the
// target, ≥ 1.0× the baseline, is for the kernel exit. Then the PoP and the kernel exit are
// profiled during one TCP stream each way. Its processes use ports 47000-47099 of their
// namespaces, its interfaces are named bt….
//
// The DNS case (phase dns, dns_test.go; issue 17) uses the baseline's and the userspace
// exit's topologies (the resolver is the same in both exit modes). In each, a site's LAN
// (10.77.0.0/24) gets a namespace of its own behind one stock client, the site's connector,
// and dnsperf there asks 100.64.0.1, the address of client configs' `DNS =` line: popgate's
// in-tunnel resolver, or dnsmasq bound to the stock server's tunnel address alone in Pop.
// Each of dnsperf's 200 sockets is SNATed to an address of its own in the LAN, because
// popgate answers one client address at most 1,000 queries a second (the phase fails if its
// resolver counted a query over that limit). Forwarded names go, for both, to a dnsmasq in
// Net that answers every A question under example.com (port 47153; popgate's
// --dns-upstream points there). Cases: 1,000 peer names of the tenant (stored in popgate;
// the same names and addresses in dnsmasq's hosts file), 100 public names asked over and
// over (after a pass that fills the caches) and names asked once (a random label per query).
// Each: NOERROR answers a second unpaced (dnsperf -l 5 -c 200 -q 200, no -Q), the gateway's
// CPU per 1,000 answers, and latency p50 and p99 at 1,000 queries a second (dnsperf -v
// reports each query's latency); then a CPU profile of serve for one unpaced run of each.
// Its interfaces are named bd…; dnsmasq and dnsperf come from Debian (make bench-deps).
//
// The UDP phase also runs the 64-byte case ten times back to back on each gateway, a new
// flow each run, once as set up and once with connection tracking on in the gateway's
// namespace (a stateful rule, as a real host has): the median and the slowest run of each
// (issue 18: a harness with fresh flows saw popgate at half the baseline's rate).
//
// Every file but this one has the build tag bench, so `go test ./...` and `make test` never
// run it. It needs root and the tools of `make bench-deps`. The environment can shorten a
// run (make bench sets none of these):
//
//	BENCH_REPS=3            runs of each case per gateway
//	BENCH_PHASES=tcp,udp,latency,twohop,profile,handshake,flood,dns,scale
//	BENCH_HS_KEYS=2000      client keys of the handshake case
//	BENCH_FLOOD_RATE=0      initiations a second of the handshake flood (0: as fast as it goes)
//	BENCH_SCALE_PEERS=100000, BENCH_SCALE_ACTIVE=10000
//	BENCH_RULES=1000        rules of the tenant policy in the throughput cases
//	BENCH_OUT=path          where to write the table ("-": only the test log); default
//	                        BENCHMARKS.md at the module root
//	BENCH_PROFILE_DIR=dir   keep the CPU profiles there
//	POPGATE_BIN=path        use this popgate binary instead of building one
//	BENCH_SERVE_ENV="K=V …" extra environment of every popgate serve (GOGC=…, GODEBUG=…)
//	BENCH_UNPRIVILEGED=1    run the userspace exit's serve as the .deb runs it: as nobody,
//	                        without capabilities (its sockets then get at most
//	                        net.core.rmem_max), ping through unprivileged ICMP sockets
package bench
