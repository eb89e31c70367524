//go:build !linux

package udpbind

import "golang.zx2c4.com/wireguard/conn"

// NewDefault returns the node's UDP socket: wireguard-go's conn.NewDefaultBind() on systems
// other than Linux, where popgate has no bind of its own.
func NewDefault() conn.Bind { return conn.NewDefaultBind() }
