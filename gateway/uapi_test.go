package gateway

import (
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

func TestParsePeerStats(t *testing.T) {
	k1, k2 := store.Key{1}, store.Key{2}
	text := strings.Join([]string{
		"private_key=" + hex.EncodeToString(make([]byte, 32)),
		"listen_port=51820",
		"public_key=" + hex.EncodeToString(k1[:]),
		"endpoint=198.51.100.4:40000",
		"last_handshake_time_sec=1773500840",
		"last_handshake_time_nsec=5",
		"rx_bytes=1572864",
		"tx_bytes=512",
		"allowed_ip=100.64.0.2/32",
		"public_key=zz", // not a key: its lines are skipped
		"rx_bytes=7",
		"public_key=" + hex.EncodeToString(k2[:]),
		"last_handshake_time_sec=0",
		"last_handshake_time_nsec=0",
		"rx_bytes=0",
		"tx_bytes=92", // the text may end without a newline
	}, "\n")
	got := map[store.Key]peerStats{}
	parsePeerStats(text, got)
	want := map[store.Key]peerStats{
		k1: {endpoint: "198.51.100.4:40000", lastHandshake: time.Unix(1773500840, 5), rxBytes: 1572864, txBytes: 512},
		k2: {txBytes: 92},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parsePeerStats =\n%+v\nwant\n%+v", got, want)
	}
}
