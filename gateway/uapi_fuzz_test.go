package gateway

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// printPeerStats writes stats the way wireguard-go's IpcGet does, the inverse of parsePeerStats.
func printPeerStats(stats map[store.Key]peerStats) string {
	var b strings.Builder
	b.WriteString("private_key=" + strings.Repeat("0", 64) + "\nlisten_port=51820\n")
	for k, st := range stats {
		fmt.Fprintf(&b, "public_key=%s\n", hex.EncodeToString(k[:]))
		if st.endpoint != "" {
			fmt.Fprintf(&b, "endpoint=%s\n", st.endpoint)
		}
		var sec, nsec int64
		if !st.lastHandshake.IsZero() {
			sec, nsec = st.lastHandshake.Unix(), int64(st.lastHandshake.Nanosecond())
		}
		fmt.Fprintf(&b, "last_handshake_time_sec=%d\nlast_handshake_time_nsec=%d\n", sec, nsec)
		fmt.Fprintf(&b, "rx_bytes=%d\ntx_bytes=%d\nallowed_ip=100.64.0.2/32\n", st.rxBytes, st.txBytes)
	}
	return b.String()
}

// FuzzParsePeerStats: from any text, parsePeerStats keeps only peers whose public_key line
// holds a key, and what it keeps prints (as IpcGet would) into text that parses to the same
// stats. A handshake at the epoch counts as none: WireGuard writes none as 0 and 0.
func FuzzParsePeerStats(f *testing.F) {
	k1, k2 := store.Key{1}, store.Key{2}
	for _, s := range []string{
		printPeerStats(map[store.Key]peerStats{
			k1: {endpoint: "198.51.100.4:40000", lastHandshake: time.Unix(1773500840, 5), rxBytes: 1572864, txBytes: 512},
			k2: {txBytes: 92},
		}),
		"public_key=" + hex.EncodeToString(k1[:]) + "\nrx_bytes=5\npublic_key=zz\nrx_bytes=7\n",
		"public_key=" + strings.ToUpper(hex.EncodeToString(k2[:])) + "\r\nendpoint=[::1]:1=2\r\n",
		"public_key=" + hex.EncodeToString(k1[:]) + "\nlast_handshake_time_sec=1\nlast_handshake_time_nsec=-1000000000\n",
		"public_key=" + hex.EncodeToString(k1[:]) + "\nlast_handshake_time_sec=-9223372036854775808\nlast_handshake_time_nsec=9223372036854775807\n",
		"rx_bytes=1\n=\n\n==\npublic_key=\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		got := map[store.Key]peerStats{}
		parsePeerStats(text, got)
		for k := range got {
			if !strings.Contains(strings.ToLower(text), "public_key="+hex.EncodeToString(k[:])) {
				t.Fatalf("%q: peer %x is in no public_key line", text, k)
			}
		}
		again := map[store.Key]peerStats{}
		parsePeerStats(printPeerStats(got), again)
		if len(again) != len(got) {
			t.Fatalf("%q: %d peers print and parse as %d", text, len(got), len(again))
		}
		for k, st := range got {
			st2 := again[k]
			if st.lastHandshake.Equal(time.Unix(0, 0)) {
				st.lastHandshake = time.Time{}
			}
			if st2.endpoint != st.endpoint || st2.rxBytes != st.rxBytes || st2.txBytes != st.txBytes || !st2.lastHandshake.Equal(st.lastHandshake) {
				t.Fatalf("%q: peer %x: %+v prints and parses as %+v", text, k, st, st2)
			}
		}
	})
}
