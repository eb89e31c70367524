package wgmuxtest

import "golang.zx2c4.com/wireguard/device"

// CloseDevice closes a wireguard-go device whose TUN is wireguard-go's tun/netstack, as a
// test's cleanup should. device.Close closes the TUN before it stops the peers, and the
// netstack TUN's Close closes the channel its stack writes answers to: a datagram that a
// peer's receiver was writing at that moment, answered by an ICMP error, sent on the closed
// channel and panicked the whole test binary. Taking the device down first stops the
// receivers, so nothing writes to the TUN when it closes.
func CloseDevice(dev *device.Device) {
	dev.Down()
	dev.Close()
}
