package firewall

import "regexp"

// InterfaceNameRule says which network interface names popgate accepts, for messages: Linux
// allows at most 15 bytes (IFNAMSIZ less its NUL) and neither "." nor "..", and these
// characters need no quoting in iptables rules, ip(8) or a UAPI socket path.
const InterfaceNameRule = "1-15 letters, digits, '_', '.' or '-', but not . or .."

var interfaceNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// ValidInterfaceName reports whether name follows InterfaceNameRule. It is the one check of
// interface names: the host rules' TUN and egress interface here, the WireGuard device's
// name in gateway.
func ValidInterfaceName(name string) bool {
	return interfaceNameRE.MatchString(name) && name != "." && name != ".."
}
