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
	stem := strings.TrimRight(p[:min(len(p), configStemMax)], "._-=+")
	if stem == "" || !isAlnumByte(stem[0]) {
		stem = "wg" + stem
		stem = strings.TrimRight(stem[:min(len(stem), configStemMax)], "._-=+")
	}
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
