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
// Every file but this one has the build tag bench, so `go test ./...` and `make test` never
// run it. It needs root and the tools of `make test-deps`. The environment can shorten a
// run (make bench sets none of these):
//
//	BENCH_REPS=3            runs of each case per gateway
//	BENCH_PHASES=tcp,udp,latency,profile,handshake,flood,scale
//	BENCH_HS_KEYS=2000      client keys of the handshake case
//	BENCH_FLOOD_RATE=0      initiations a second of the handshake flood (0: as fast as it goes)
//	BENCH_SCALE_PEERS=100000, BENCH_SCALE_ACTIVE=10000
//	BENCH_RULES=1000        rules of the tenant policy in the throughput cases
//	BENCH_OUT=path          where to write the table ("-": only the test log); default
//	                        BENCHMARKS.md at the module root
//	BENCH_PROFILE_DIR=dir   keep the CPU profiles there
//	POPGATE_BIN=path        use this popgate binary instead of building one
package bench
