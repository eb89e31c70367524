package netstack

import (
	"bytes"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// FuzzUDPReply: whatever datagram a flow's host socket reads (any payload up to the largest
// one IP packet carries) and whatever the MTU (1,280 to 65,535), the relay's reply packets,
// read by gVisor's header parsers, are each within the MTU with valid headers and one
// identification, and reassemble into exactly the datagram, from the destination to the
// client, with a valid checksum. The fuzzer chooses the addresses, ports, length and payload.
func FuzzUDPReply(f *testing.F) {
	for _, s := range []struct {
		v6       bool
		mtu, n   uint16
		fill     []byte
		sp, dp   uint16
		fragment uint32
	}{
		{false, 1420, 1392, []byte{1, 2, 3}, 53, 4000, 7},
		{false, 1420, 1393, []byte{0xff}, 53, 4000, 7},
		{false, 1280, 65507, []byte{0}, 1, 65535, 0xffffffff},
		{false, 65535, 3000, nil, 0, 0, 0},
		{true, 1420, 1372, []byte("abc"), 443, 5000, 1},
		{true, 1420, 1373, []byte("abc"), 443, 5000, 1},
		{true, 1280, 65527, []byte{0x80}, 9, 9, 0},
		{true, 1281, 1233, []byte{0xfe, 0xff}, 1, 1, 2},
	} {
		f.Add(s.v6, s.mtu, s.n, s.fill, s.sp, s.dp, s.fragment)
	}
	frag := make([]byte, fragBufSize)
	slot := make([]byte, udpSlotSize)
	f.Fuzz(func(t *testing.T, v6 bool, mtu16, n16 uint16, fill []byte, sport, dport uint16, id uint32) {
		mtu := max(int(mtu16), 1280)
		// Addresses from the first bytes of fill, so that checksums see them vary.
		var a [32]byte
		copy(a[:], fill)
		from, to := netip.AddrFrom4([4]byte(a[:4])), netip.AddrFrom4([4]byte(a[4:8]))
		if v6 {
			from, to = netip.AddrFrom16([16]byte(a[:16])), netip.AddrFrom16([16]byte(a[16:]))
		}
		src, dst := netip.AddrPortFrom(from, sport), netip.AddrPortFrom(to, dport)
		h := newReplyHeader(src, dst)
		n := int(n16)
		if n > h.maxPayload() {
			return
		}
		payload := slot[udpRoom : udpRoom+n]
		for i := range payload {
			payload[i] = byte(i)
			if len(fill) > 0 {
				payload[i] = fill[i%len(fill)]
			}
		}
		want := bytes.Clone(payload)
		pkts := h.appendReply(nil, slot, n, mtu, frag, id)
		if (len(pkts) == 1) != h.fits(n, mtu) || len(pkts) > maxFragments {
			t.Fatalf("%d bytes at MTU %d: %d packets", n, mtu, len(pkts))
		}
		var data []byte
		for i, p := range pkts {
			if len(p) > mtu {
				t.Fatalf("packet %d of %d: %d bytes over MTU %d", i, len(pkts), len(p), mtu)
			}
			more, fragmented := i < len(pkts)-1, len(pkts) > 1
			var off int
			var body []byte
			if !v6 {
				ip := header.IPv4(p)
				if !ip.IsValid(len(p)) || !ip.IsChecksumValid() || int(ip.TotalLength()) != len(p) || ip.Protocol() != protoUDP ||
					ip.SourceAddress() != tcpAddr(from) || ip.DestinationAddress() != tcpAddr(to) || ip.Flags()&header.IPv4FlagDontFragment != 0 {
					t.Fatalf("packet %d: bad IPv4 header %x", i, p[:min(len(p), 20)])
				}
				if (ip.Flags()&header.IPv4FlagMoreFragments != 0) != more || fragmented && ip.ID() != uint16(id) {
					t.Fatalf("packet %d of %d: flags %x id %x", i, len(pkts), ip.Flags(), ip.ID())
				}
				off, body = int(ip.FragmentOffset()), ip.Payload()
			} else {
				ip := header.IPv6(p)
				if !ip.IsValid(len(p)) || int(ip.PayloadLength())+header.IPv6MinimumSize != len(p) ||
					ip.SourceAddress() != tcpAddr(from) || ip.DestinationAddress() != tcpAddr(to) {
					t.Fatalf("packet %d: bad IPv6 header %x", i, p[:min(len(p), 40)])
				}
				body = ip.Payload()
				if fragmented {
					fh := header.IPv6Fragment(body)
					if ip.NextHeader() != protoFragment || !fh.IsValid() || fh.NextHeader() != protoUDP || fh.More() != more || fh.ID() != id {
						t.Fatalf("packet %d of %d: bad fragment header %x", i, len(pkts), body[:min(len(body), 8)])
					}
					off, body = int(fh.FragmentOffset())*8, body[fragHeaderLen:]
				} else if ip.NextHeader() != protoUDP {
					t.Fatalf("next header %d", ip.NextHeader())
				}
			}
			if off != len(data) || more && len(body)%8 != 0 || i == 0 && len(body) < udpHeaderLen {
				t.Fatalf("packet %d of %d: %d bytes at offset %d, want offset %d", i, len(pkts), len(body), off, len(data))
			}
			data = append(data, body...)
		}
		u := header.UDP(data)
		if len(data) < udpHeaderLen || int(u.Length()) != len(data) || u.SourcePort() != sport || u.DestinationPort() != dport || !bytes.Equal(u.Payload(), want) {
			t.Fatalf("%d bytes at MTU %d reassemble into a different datagram", n, mtu)
		}
		sum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, tcpAddr(from), tcpAddr(to), uint16(len(data)))
		if u.Checksum() == 0 || checksum.Checksum(data, sum) != 0xffff {
			t.Fatalf("%d bytes at MTU %d: bad UDP checksum %x", n, mtu, u.Checksum())
		}
	})
}
