//go:build race

package gateway

// muxRace: the race detector is on; sync.Pool then drops items on purpose, so allocation
// counts mean nothing.
const muxRace = true
