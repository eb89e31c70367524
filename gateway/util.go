package gateway

import (
	"net/netip"
	"slices"
)

// sortLongestFirst orders xs by prefix length, longest first, so a linear walk finds the
// longest match first.
func sortLongestFirst[T any](xs []T, prefix func(T) netip.Prefix) {
	slices.SortStableFunc(xs, func(a, b T) int { return prefix(b).Bits() - prefix(a).Bits() })
}
