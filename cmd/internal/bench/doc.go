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
// Every file but this one has the build tag bench, so `go test ./...` and `make test` never
// run it. It needs root and the tools of `make test-deps`. The environment can shorten a
// run (make bench sets none of these):
//
//	BENCH_REPS=3            runs of each case per gateway
//	BENCH_PHASES=tcp,udp,latency,twohop,profile,handshake,flood,scale
//	BENCH_HS_KEYS=2000      client keys of the handshake case
//	BENCH_FLOOD_RATE=0      initiations a second of the handshake flood (0: as fast as it goes)
//	BENCH_SCALE_PEERS=100000, BENCH_SCALE_ACTIVE=10000
//	BENCH_RULES=1000        rules of the tenant policy in the throughput cases
//	BENCH_OUT=path          where to write the table ("-": only the test log); default
//	                        BENCHMARKS.md at the module root
//	BENCH_PROFILE_DIR=dir   keep the CPU profiles there
//	POPGATE_BIN=path        use this popgate binary instead of building one
package bench
