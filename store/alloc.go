package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// overlayV4 is the IPv4 overlay of every installation: the shared address space of RFC 6598.
func overlayV4() netip.Prefix { return netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, 0}), 10) }

// gatewayV4 is the node's own address in overlayV4.
func gatewayV4() netip.Addr { return netip.AddrFrom4([4]byte{100, 64, 0, 1}) }

// IPv4 pool bounds as integers: the network address and the gateway (100.64.0.0 and .1) are
// never assigned, nor the top /16, 100.127.0.0/16 (nodeBlockV4): the nodes' own overlay
// addresses (gateway/plane NodeAddrs).
const (
	ipv4First = 0x64400002 // 100.64.0.2
	ipv4Last  = 0x647EFFFF // 100.126.255.255
)

// nodeBlockV4 is the block of the nodes' own overlay addresses, kept out of the peers'
// pool; gateway/plane's NodeBlock4, which the store cannot import.
func nodeBlockV4() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 127, 0, 0}), 16)
}

// allocIPv4 picks the IPv4 address of a new peer inside the AddPeer transaction tx and
// records it as assigned. Addresses are handed out in order above the highest one ever
// assigned (the high-water mark, at least max(ipv4)), so that an address freed by RemovePeer
// does not go to the next new peer while stale configs, logs or flow state may still name
// it. Only when the top of the pool is reached is the lowest free address reused. The error
// wraps ErrExhausted when no address is free.
func (s *Store) allocIPv4(ctx context.Context, tx *sql.Tx) (uint32, error) {
	hw, err := highWater(ctx, tx)
	if err != nil {
		return 0, err
	}
	var maxUsed sql.NullInt64 // NULL without peers; an index lookup, not a scan
	if err := tx.QueryRowContext(ctx, "SELECT max(ipv4) FROM peers").Scan(&maxUsed); err != nil {
		return 0, fmt.Errorf("store: allocate address: %w", err)
	}
	first, last := int64(s.v4First), int64(s.v4Last)
	top := max(int64(hw), maxUsed.Int64)
	var a int64
	switch {
	case top < first:
		a = first
	case top < last:
		a = top + 1
	default:
		var ok bool
		if a, ok, err = lowestFreeIPv4(ctx, tx, first, last); err != nil {
			return 0, err
		} else if !ok {
			return 0, errorf(ErrExhausted, "no overlay address is free: all %d IPv4 addresses of %s are assigned; remove peers that are no longer used", last-first+1, overlayV4())
		}
	}
	if a > int64(hw) {
		if err := putSetting(ctx, tx, settingIPv4HighWater, strconv.FormatInt(a, 10), micros(s.now())); err != nil {
			return 0, err
		}
	}
	return uint32(a), nil
}

// lowestFreeIPv4 returns the lowest address in [first, last] that no peer holds. It walks
// the ipv4 index in order and stops at the first assigned address whose successor is free,
// so it reads only the rows below the first gap.
func lowestFreeIPv4(ctx context.Context, q querier, first, last int64) (int64, bool, error) {
	var firstUsed bool
	if err := q.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM peers WHERE ipv4 = ?)", first).Scan(&firstUsed); err != nil {
		return 0, false, fmt.Errorf("store: allocate address: %w", err)
	}
	if !firstUsed {
		return first, true, nil
	}
	var a int64
	err := q.QueryRowContext(ctx, gapQuery, first, last).Scan(&a)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("store: allocate address: %w", err)
	}
	return a, true, nil
}

// gapQuery finds the lowest assigned address in [first, last) whose successor is free; its
// arguments are first and last.
const gapQuery = `SELECT p.ipv4 + 1 FROM peers AS p
	WHERE p.ipv4 >= ? AND p.ipv4 < ?
	  AND NOT EXISTS (SELECT 1 FROM peers AS n WHERE n.ipv4 = p.ipv4 + 1)
	ORDER BY p.ipv4
	LIMIT 1`

// addrFromUint32 converts the schema's IPv4 integer to an address.
func addrFromUint32(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// ipv6For returns the IPv6 address that goes with the IPv4 address v4: the ULA /48, subnet 0,
// and an interface ID whose lower 32 bits are v4.
func (s *Store) ipv6For(v4 uint32) netip.Addr {
	b := s.ula.Addr().As16() // bytes 6-11 (subnet and upper interface ID) are zero
	binary.BigEndian.PutUint32(b[12:], v4)
	return netip.AddrFrom16(b)
}
