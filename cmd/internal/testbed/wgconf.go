package testbed

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Config is a wg-quick(8) configuration file, parsed by the rules wg-quick and wg(8) apply:
// section and key names are case-insensitive, '#' starts a comment anywhere, Address, DNS and
// AllowedIPs take comma-separated lists and may repeat.
type Config struct {
	Interface Interface
	Peers     []Peer
}

// Interface is the [Interface] section.
type Interface struct {
	PrivateKey string // base64; empty when absent (e.g. a placeholder comment)
	ListenPort int
	FwMark     string
	Addresses  []netip.Prefix // an address without a length is a host prefix
	DNS        []string
	MTU        int
	Table      string
	// Hooks holds PreUp, PostUp, PreDown and PostDown lines by key; this package never runs them.
	Hooks      map[string][]string
	SaveConfig bool
}

// Peer is one [Peer] section.
type Peer struct {
	PublicKey           string
	PresharedKey        string
	Endpoint            string
	AllowedIPs          []netip.Prefix
	PersistentKeepalive int // seconds; 0 is off
}

// ParseConfig parses a wg-quick file and rejects what wg-quick or `wg setconf` would reject
// (unknown sections or keys, keys that are not 32 bytes of base64, bad addresses or numbers),
// naming the line.
func ParseConfig(text string) (*Config, error) {
	var c Config
	section := ""
	seen := map[string]bool{} // single-valued keys already set in the current section
	for i, raw := range strings.Split(text, "\n") {
		lineNo := i + 1
		line, _, _ := strings.Cut(raw, "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			switch strings.ToLower(line) {
			case "[interface]":
				if section != "" {
					return nil, fmt.Errorf("line %d: [Interface] must come first and only once", lineNo)
				}
				section = "interface"
			case "[peer]":
				if section == "" {
					return nil, fmt.Errorf("line %d: [Peer] before [Interface]", lineNo)
				}
				section = "peer"
				c.Peers = append(c.Peers, Peer{})
			default:
				return nil, fmt.Errorf("line %d: unknown section %q", lineNo, line)
			}
			seen = map[string]bool{}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: %q is not key = value", lineNo, line)
		}
		key, value = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(value)
		if section == "" {
			return nil, fmt.Errorf("line %d: %s outside a section", lineNo, key)
		}
		switch key {
		case "address", "dns", "allowedips", "preup", "postup", "predown", "postdown":
		default:
			if seen[key] {
				return nil, fmt.Errorf("line %d: %s given twice in one section", lineNo, key)
			}
			seen[key] = true
		}
		var err error
		if section == "interface" {
			err = c.Interface.set(key, value)
		} else {
			err = c.Peers[len(c.Peers)-1].set(key, value)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
	}
	if section == "" {
		return nil, fmt.Errorf("no [Interface] section")
	}
	for i, p := range c.Peers {
		if p.PublicKey == "" {
			return nil, fmt.Errorf("peer %d has no PublicKey", i+1)
		}
	}
	return &c, nil
}

func (in *Interface) set(key, value string) error {
	var err error
	switch key {
	case "privatekey":
		err = checkKey(value)
		in.PrivateKey = value
	case "listenport":
		in.ListenPort, err = parseUint(value, 65535)
	case "fwmark":
		in.FwMark = value
	case "address":
		var ps []netip.Prefix
		ps, err = parsePrefixList(value)
		in.Addresses = append(in.Addresses, ps...)
	case "dns":
		for v := range strings.SplitSeq(value, ",") {
			if v = strings.TrimSpace(v); v != "" {
				in.DNS = append(in.DNS, v)
			}
		}
	case "mtu":
		in.MTU, err = parseUint(value, 65535)
	case "table":
		in.Table = value
	case "preup", "postup", "predown", "postdown":
		if in.Hooks == nil {
			in.Hooks = map[string][]string{}
		}
		in.Hooks[key] = append(in.Hooks[key], value)
	case "saveconfig":
		in.SaveConfig, err = strconv.ParseBool(value)
	default:
		return fmt.Errorf("unknown [Interface] key %q", key)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

func (p *Peer) set(key, value string) error {
	var err error
	switch key {
	case "publickey":
		err = checkKey(value)
		p.PublicKey = value
	case "presharedkey":
		err = checkKey(value)
		p.PresharedKey = value
	case "endpoint":
		if value == "" {
			err = fmt.Errorf("empty")
		}
		p.Endpoint = value
	case "allowedips":
		var ps []netip.Prefix
		ps, err = parsePrefixList(value)
		p.AllowedIPs = append(p.AllowedIPs, ps...)
	case "persistentkeepalive":
		if value == "off" {
			p.PersistentKeepalive = 0
		} else {
			p.PersistentKeepalive, err = parseUint(value, 65535)
		}
	default:
		return fmt.Errorf("unknown [Peer] key %q", key)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// EndpointAddrPort returns the endpoint when it is an IP literal with a port.
func (p Peer) EndpointAddrPort() (netip.AddrPort, error) {
	return netip.ParseAddrPort(p.Endpoint)
}

func checkKey(s string) error {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return fmt.Errorf("%q is not a key (32 bytes of base64)", s)
	}
	return nil
}

func parseUint(s string, limit int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > limit {
		return 0, fmt.Errorf("%q is not a number in 0-%d", s, limit)
	}
	return n, nil
}

// parsePrefixList parses "a/n, b, …"; an address without a length is a host prefix, as in
// wg-quick (Address) and wg (AllowedIPs).
func parsePrefixList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for v := range strings.SplitSeq(s, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !strings.Contains(v, "/") {
			a, err := netip.ParseAddr(v)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is not an IP address", v)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP prefix", v)
		}
		out = append(out, p)
	}
	return out, nil
}

// GenerateKeyPair returns a new WireGuard private key and its public key, base64.
func GenerateKeyPair() (private, public string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	b[0] &= 248
	b[31] = (b[31] & 127) | 64
	private = base64.StdEncoding.EncodeToString(b[:])
	public, err = PublicKey(private)
	return private, public, err
}

// PublicKey derives the base64 public key of a base64 private key.
func PublicKey(private string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(private)
	if err != nil || len(b) != 32 {
		return "", fmt.Errorf("%q is not a private key (32 bytes of base64)", private)
	}
	k, err := ecdh.X25519().NewPrivateKey(b)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(k.PublicKey().Bytes()), nil
}
