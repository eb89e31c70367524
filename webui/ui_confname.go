package webui

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"
)

// wgQuickNameMax is the longest interface name wg-quick takes from a file name: it accepts
// `wg-quick up ./FILE` only for FILE = NAME.conf with NAME of 1-15 characters of
// [a-zA-Z0-9_=+.-] (a Linux interface name).
const wgQuickNameMax = 15

// configStemMax is how much of a peer name a shortened file name keeps: the rest of the
// interface name is '+' and the disambiguator.
const configStemMax = wgQuickNameMax - 1 - configHashLen

// configHashLen is the length of the disambiguator of a shortened file name: 20 bits.
const configHashLen = 4

// configHash is the disambiguator's alphabet: lower-case base32, all of it wg-quick-safe.
var configHash = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// configFileName is the name a peer's wg-quick config is saved under (the download, the
// one-time link): a name `wg-quick up ./NAME` takes as it is, which is also the interface
// wg-quick creates. In order of preference:
//
//   - "<tenant>-<peer>.conf" when that fits in 15 characters;
//   - "<peer>.conf" when the peer name fits (and does not itself start with "<tenant>-",
//     which the first form of another peer may produce);
//   - the first 10 characters of the peer name, '+' and 4 characters of a hash of tenant
//     and peer: "alice-lapt+jeyb.conf". Tenant and peer names never hold '+', so this
//     form never equals one of the others, and the hash tells apart peers whose names
//     start alike.
//
// The result depends only on the names, so a peer's file keeps its name. Peers of
// different tenants may share a file name when both tenant names are too long to appear in
// it. Names that break the naming rules (store.ValidatePeerName) still give a usable name:
// bytes wg-quick refuses become '_' and the hash is added.
func configFileName(tenant, peer string) string {
	t, tok := wgQuickSafe(tenant)
	p, pok := wgQuickSafe(peer)
	if tok && pok && p != "" && isAlnumByte(p[0]) {
		if s := t + "-" + p; t != "" && isAlnumByte(t[0]) && len(s) <= wgQuickNameMax {
			return s + ".conf"
		}
		if len(p) <= wgQuickNameMax && (t == "" || !strings.HasPrefix(p, t+"-")) {
			return p + ".conf"
		}
	}
	stem := peerStem(p, configStemMax)
	sum := sha256.Sum256([]byte(tenant + "/" + peer))
	return stem + "+" + configHash.EncodeToString(sum[:3])[:configHashLen] + ".conf"
}

// wgQuickSafe replaces every byte wg-quick refuses in an interface name ([a-zA-Z0-9_=+.-])
// with '_', and '+', which only shortened names use, too; ok reports that nothing was
// replaced.
func wgQuickSafe(s string) (safe string, ok bool) {
	b := []byte(s)
	ok = true
	for i, c := range b {
		if !isAlnumByte(c) && c != '_' && c != '=' && c != '.' && c != '-' {
			b[i], ok = '_', false
		}
	}
	return string(b), ok
}

func isAlnumByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// configFileNameIn is the name of a peer's config for region, "" for the controller's own
// region, whose configs keep configFileName's name. Another region's name carries the
// region, so that the configs of one peer for two regions import side by side (the
// WireGuard apps and wg-quick name the tunnel after the file). In order of preference:
//
//   - the home name, '-' and the region when that fits in 15 characters:
//     "acme-laptop-fra.conf", "alice-phone-fra.conf";
//   - as much of the peer name as leaves room for '=' and a region of at most 9
//     characters: "alice-lapto=fra.conf", "lapto=us-east-1.conf";
//   - the first 10 characters of the peer name, '=' and 4 characters of a hash of tenant,
//     peer and region, for a longer region name: "alice-lapt=k2xq.conf".
//
// Valid names never hold '=', so the shortened forms never equal a home name, and the part
// after '=' tells regions apart. For one peer every region's name differs from every other
// region's and from the home name (the hashed form up to its hash); two peers of a tenant may
// share a name of another region ("laptop" in fra and a peer named "laptop-fra" at home).
func configFileNameIn(tenant, peer, region string) string {
	home := configFileName(tenant, peer)
	if region == "" {
		return home
	}
	r, rok := wgQuickSafe(region)
	stem := strings.TrimSuffix(home, ".conf")
	if rok && r != "" && !strings.Contains(stem, "+") && len(stem)+1+len(r) <= wgQuickNameMax {
		return stem + "-" + r + ".conf"
	}
	p, _ := wgQuickSafe(peer)
	if rok && r != "" && len(r) <= regionTailMax {
		return peerStem(p, wgQuickNameMax-1-len(r)) + "=" + r + ".conf"
	}
	sum := sha256.Sum256([]byte(tenant + "/" + peer + "/" + region))
	return peerStem(p, configStemMax) + "=" + configHash.EncodeToString(sum[:3])[:configHashLen] + ".conf"
}

// regionTailMax is the longest region name a shortened config file name keeps whole
// ("us-east-1"): it leaves at least 5 characters of the peer name.
const regionTailMax = 9

// peerStem is the first n bytes of a wg-quick-safe peer name without a separator left
// dangling, starting with a letter or digit ("wg" put in front when it does not).
func peerStem(p string, n int) string {
	stem := strings.TrimRight(p[:min(len(p), n)], "._-=+")
	if stem == "" || !isAlnumByte(stem[0]) {
		stem = "wg" + stem
		stem = strings.TrimRight(stem[:min(len(stem), n)], "._-=+")
	}
	return stem
}
