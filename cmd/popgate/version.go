package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is the release, set at build time: go build -ldflags "-X main.version=1.2.3".
var version = "dev"

// fullVersion is version; a dev build adds the VCS revision it was built from when the
// build recorded one ("dev+1a2b3c4d5e6f", "+dirty" with uncommitted changes).
func fullVersion() string {
	v := version
	if v != "dev" {
		return v
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return v
	}
	v += "+" + rev[:min(12, len(rev))]
	if dirty {
		v += "-dirty"
	}
	return v
}

var versionSpec = cmdSpec{
	name:    "version",
	usage:   "version",
	about:   "Print the version of this popgate binary, the Go version it was built with and its platform.",
	example: "popgate version",
}

func (a *app) cmdVersion(_ context.Context, args []string) error {
	f := newCmdFlags(versionSpec)
	if _, err := f.parse(a.stdout, args); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "popgate %s (%s, %s/%s)\n", fullVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
