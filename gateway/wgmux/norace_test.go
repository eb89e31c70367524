//go:build !race

package wgmux

const raceEnabled = false
