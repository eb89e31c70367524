package nodesync

import (
	"bytes"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane"
)

// FuzzParseToken: a join token is outside input (pasted, from a cloud-init seed). Parse
// never panics, and what it accepts encodes back to a token that parses the same.
func FuzzParseToken(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add(Token{Addr: "192.0.2.1:7443", Pin: Pin{1}, ID: 1, Secret: [32]byte{2}, Expires: now.Add(time.Hour)}.Encode())
	f.Add("popgate-join-1.e30")
	f.Add("popgate-join-2.")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s, now)
		if err != nil {
			return
		}
		again, err := ParseToken(tok.Encode(), now)
		if err != nil || again != tok {
			t.Fatalf("%q parsed to %+v, which encodes to a token that parses to %+v, %v", s, tok, again, err)
		}
	})
}

// FuzzReadFrame: frames come from the other end of a network connection. Decoding never
// panics and never reads past its frame.
func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	writeFrame(&buf, frame{Desired: desired(3), Time: time.Unix(1, 0)})
	f.Add(buf.Bytes())
	buf.Reset()
	writeFrame(&buf, report{Generation: 2, Report: &plane.Report{Format: 1}})
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 1, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		var fr frame
		if err := readFrame(r, &fr); err == nil && fr.Desired != nil {
			fr.Desired.Validate()
		}
		r = bytes.NewReader(b)
		var rep report
		readFrame(r, &rep)
	})
}
