//go:build !race

package gateway

const muxRace = false
