//go:build race

package netstack

// raceEnabled: the race detector makes sync.Pool drop items at random, so allocation counts
// of code that pools are not meaningful.
const raceEnabled = true
