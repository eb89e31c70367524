package store

import (
	"strings"
)

// ViaExitPrefix starts each element of the Route.Via of routes through exit nodes:
// "exit:x1,exit:x2".
const ViaExitPrefix = "exit:"

// MaxRouteExits is the most exits one route lists: enough for a primary and fallbacks in a
// few regions, few enough that a route's failover order stays readable.
const MaxRouteExits = 8

// Via is a parsed Route.Via: exactly one of Internet, Site and Exits says where the route
// goes.
type Via struct {
	// Internet: ViaInternet.
	Internet bool
	// Site is the site's name of "site:NAME".
	Site string
	// Exits are the exit nodes' names of "exit:a,exit:b", in order of preference: the
	// first healthy one carries the traffic. 1 to MaxRouteExits, no name twice.
	Exits []string
}

// String returns the via as ParseVia reads it.
func (v Via) String() string {
	switch {
	case v.Site != "":
		return ViaSitePrefix + v.Site
	case len(v.Exits) > 0:
		var b strings.Builder
		for i, e := range v.Exits {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(ViaExitPrefix)
			b.WriteString(e)
		}
		return b.String()
	default:
		return ViaInternet
	}
}

// ParseVia reads where a route goes: ViaInternet; "site:NAME" with a valid site name; or an
// ordered list of 1 to MaxRouteExits exit nodes, "exit:x1,exit:x2", with valid node names and
// none twice. Nothing else is accepted, not even other spellings (spaces, an empty element,
// "exit:a,b"), so that a parsed via prints back as it was given (Via.String). The error wraps
// ErrInvalid and says how to write it.
func ParseVia(via string) (Via, error) {
	if via == ViaInternet {
		return Via{Internet: true}, nil
	}
	if name, ok := strings.CutPrefix(via, ViaSitePrefix); ok {
		if err := ValidateSiteName(name); err != nil {
			return Via{}, errorf(ErrInvalid, "route via %q is invalid: %v", truncate(via, 80), err)
		}
		return Via{Site: name}, nil
	}
	if !strings.HasPrefix(via, ViaExitPrefix) {
		return Via{}, errorf(ErrInvalid, "route via %q is invalid: use %q, %q followed by the name of one of the tenant's sites (e.g. %q), or exit nodes in order (e.g. %q)",
			truncate(via, 80), ViaInternet, ViaSitePrefix, ViaSitePrefix+"office", "exit:x1,exit:x2")
	}
	if n := strings.Count(via, ",") + 1; n > MaxRouteExits {
		return Via{}, errorf(ErrInvalid, "route via %q lists %d exits: give at most %d", truncate(via, 80), n, MaxRouteExits)
	}
	var v Via
	for elem := range strings.SplitSeq(via, ",") {
		name, ok := strings.CutPrefix(elem, ViaExitPrefix)
		if !ok {
			return Via{}, errorf(ErrInvalid, "route via %q is invalid: %q is not exit:NAME; write every exit so, separated by commas without spaces (e.g. %q)",
				truncate(via, 80), truncate(elem, 40), "exit:x1,exit:x2")
		}
		if err := ValidateNodeName(name); err != nil {
			return Via{}, errorf(ErrInvalid, "route via %q is invalid: exit %v", truncate(via, 80), err)
		}
		for _, e := range v.Exits {
			if e == name {
				return Via{}, errorf(ErrInvalid, "route via %q names exit %q twice: list each exit once, in the order to try them", truncate(via, 80), name)
			}
		}
		v.Exits = append(v.Exits, name)
	}
	return v, nil
}
