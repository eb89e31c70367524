package nodesync

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// Frames on the sync stream: a 4-byte big-endian length, then that many bytes of gzip'd
// JSON. The controller sends frames (a Desired, or a ping); the node sends reports.

// Bounds on a frame, both ways: what arrives compressed and what it may expand to (a
// Desired of 100,000 peers is some 30 MB of JSON).
const (
	maxFrame    = 64 << 20
	maxExpanded = 512 << 20
)

// frame is what the controller sends.
type frame struct {
	Desired *plane.Desired `json:"desired,omitempty"`
	Ping    bool           `json:"ping,omitempty"`
	// Events is the newest event of the node the controller recorded, in the first frame
	// of a stream: the node sends its events after it (none before it knows).
	Events *store.EventCursor `json:"events,omitempty"`
	// DNSLog is the newest query of the node's query log the controller recorded, in the
	// first frame of a stream, as Events: the node sends its logged queries after it.
	DNSLog *store.EventCursor `json:"dns_log,omitempty"`
	// Time is the controller's clock when it sent the frame.
	Time time.Time `json:"time"`
}

// Backbone is a node's backbone address and key.
type Backbone struct {
	Endpoint  string    `json:"endpoint"`
	PublicKey store.Key `json:"public_key"`
}

// report is what a node sends.
type report struct {
	// Generation is that of the last Desired the node applied.
	Generation int64 `json:"generation"`
	// ApplyError says why the last Desired (of generation Failed) was not applied.
	ApplyError string        `json:"apply_error,omitempty"`
	Failed     int64         `json:"failed,omitempty"`
	Report     *plane.Report `json:"report,omitempty"`
	// Backbone is where the node's backbone is reached and its key, as the node is
	// configured now: the controller records a change (a node that joined without
	// --backbone-endpoint, or moved), so that no node has to join again for it.
	Backbone *Backbone `json:"backbone,omitempty"`
	// Boot tells this node's process from its earlier ones: the events and logged queries
	// of Report (which number from 1 at each start) are its.
	Boot int64 `json:"boot,omitempty"`
	// Time is the node's clock when it sent the report.
	Time time.Time `json:"time"`
}

// writeFrame writes v as one frame.
func writeFrame(w io.Writer, v any) error {
	var buf bytes.Buffer
	buf.Write([]byte{0, 0, 0, 0})
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(v); err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	n := buf.Len() - 4
	if n > maxFrame {
		return fmt.Errorf("frame of %d bytes, more than %d", n, maxFrame)
	}
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b, uint32(n))
	_, err := w.Write(b)
	return err
}

var errFrameTooLarge = errors.New("frame too large")

// readFrame reads one frame into v. io.EOF means the stream ended cleanly, between frames.
func readFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return fmt.Errorf("%w: %d bytes, at most %d", errFrameTooLarge, n, maxFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("decode frame: %w", err)
	}
	plain, err := io.ReadAll(io.LimitReader(zr, maxExpanded+1))
	if err != nil {
		return fmt.Errorf("decode frame: %w", err)
	}
	if len(plain) > maxExpanded {
		return fmt.Errorf("%w: expands to more than %d bytes", errFrameTooLarge, maxExpanded)
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return fmt.Errorf("decode frame: %w", err)
	}
	return nil
}
