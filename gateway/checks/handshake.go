package checks

import (
	"context"

	"github.com/popgate/popgate/gateway/plane"
)

// handshake asks c's endpoint for a WireGuard handshake.
func (p *netProber) handshake(ctx context.Context, c *plane.Check) outcome {
	return outcome{err: "handshake checks are not supported by this node"}
}
