package control

// NodeAddr returns the host:port nodes reach the controller at, which its join tokens carry;
// "" when it does not accept nodes (serve without --controller-addr).
func (c *Controller) NodeAddr() string {
	if c.cfg.Nodes == nil {
		return ""
	}
	return c.cfg.Nodes.Addr
}
