// Command debcopyright writes /usr/share/doc/popgate/copyright for the .deb: popgate's own
// notice, then every Go module compiled into the binary (read from its build info) with the
// license files found in the module cache. A module without a recognised license fails the
// build, so a new dependency's license is looked at before it ships.
//
//	go run ./debcopyright -bin popgate -header copyright.head -modcache "$(go env GOMODCACHE)" -goroot "$(go env GOROOT)"
package main

import (
	"bytes"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode"
)

func main() {
	bin := flag.String("bin", "", "the built `binary`")
	header := flag.String("header", "", "`file` with popgate's own copyright notice, copied first")
	modcache := flag.String("modcache", "", "the module cache `dir` (go env GOMODCACHE)")
	goroot := flag.String("goroot", "", "the Go `root` the binary was built with (go env GOROOT)")
	out := flag.String("o", "-", "output `file`")
	flag.Parse()
	if *bin == "" || *header == "" || *modcache == "" || *goroot == "" {
		fmt.Fprintln(os.Stderr, "debcopyright: -bin, -header, -modcache and -goroot are required")
		os.Exit(2)
	}
	text, err := generate(*bin, *header, *modcache, *goroot)
	if err != nil {
		fmt.Fprintf(os.Stderr, "debcopyright: %v\n", err)
		os.Exit(1)
	}
	if *out == "-" {
		_, err = os.Stdout.Write(text)
	} else {
		err = os.WriteFile(*out, text, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "debcopyright: %v\n", err)
		os.Exit(1)
	}
}

// component is one body of code in the binary: the Go standard library or a module.
type component struct {
	name, version, dir string
}

func generate(bin, header, modcache, goroot string) ([]byte, error) {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	head, err := os.ReadFile(header)
	if err != nil {
		return nil, err
	}
	comps := []component{{name: "Go standard library and runtime", version: info.GoVersion, dir: goroot}}
	var mods []component
	for _, d := range info.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		dir := filepath.Join(modcache, escape(d.Path)+"@"+escape(d.Version))
		mods = append(mods, component{name: d.Path, version: d.Version, dir: dir})
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].name < mods[j].name })
	comps = append(comps, mods...)

	var b bytes.Buffer
	b.Write(bytes.TrimRight(head, "\n"))
	b.WriteString("\n\n/usr/bin/popgate is a Go program: the code below is compiled into it. Each part's\n" +
		"license follows, copied from its source.\n")
	for _, c := range comps {
		files, err := licenseFiles(c.dir)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", c.name, c.version, err)
		}
		fmt.Fprintf(&b, "\n%s\n%s %s\n", strings.Repeat("-", 79), c.name, c.version)
		for _, f := range files {
			data, err := os.ReadFile(filepath.Join(c.dir, f))
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&b, "\nFile %s", f)
			// Only the main license file is classified: notices and third-party lists
			// quote several licenses and are copied as they are.
			id := ""
			if isPrimary(f) {
				if id = classify(data); id == "" {
					return nil, fmt.Errorf("%s %s: the license in %s is not one this tool recognises: read it, then teach classify in packaging/tools/debcopyright", c.name, c.version, f)
				}
				fmt.Fprintf(&b, " (%s)", id)
			}
			b.WriteString(":\n")
			if id == "Apache-2.0" {
				b.WriteString("  Apache License, Version 2.0: on Debian systems the full text is in\n" +
					"  /usr/share/common-licenses/Apache-2.0.\n")
				continue
			}
			writeIndented(&b, elideApache(data))
		}
	}
	return b.Bytes(), nil
}

// escape spells a module path or version as the module cache does: an upper-case letter
// becomes '!' and the letter in lower case.
func escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

var licenseName = regexp.MustCompile(`^(?i)(licen[cs]e|copying|notice|patents)([.-].*)?$`)

// isPrimary reports whether f is the main license file (not a notice or a third-party list).
func isPrimary(f string) bool {
	l := strings.ToLower(f)
	return l == "license" || l == "licence" || l == "copying" || l == "license.md" || l == "license.txt"
}

// licenseFiles lists the license files at the root of dir; at least one must be primary.
func licenseFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w (is the module in the cache? run go mod download)", err)
	}
	var out []string
	primary := false
	for _, e := range ents {
		if e.Type().IsRegular() && licenseName.MatchString(e.Name()) {
			out = append(out, e.Name())
			primary = primary || isPrimary(e.Name())
		}
	}
	if !primary {
		return nil, errors.New("no LICENSE or COPYING file")
	}
	return out, nil
}

// classify names the license of a license file's text by its telltale phrases; "" when none
// matches.
func classify(text []byte) string {
	t := strings.Join(strings.Fields(strings.ToLower(string(text))), " ")
	has := strings.Contains
	switch {
	case has(t, "apache license") && has(t, "version 2.0"):
		return "Apache-2.0"
	case has(t, "mozilla public license") && has(t, "2.0"):
		return "MPL-2.0"
	case has(t, "permission is hereby granted, free of charge"):
		return "Expat"
	case has(t, "redistribution and use in source and binary forms") && has(t, "neither the name"):
		return "BSD-3-clause"
	case has(t, "redistribution and use in source and binary forms"):
		return "BSD-2-clause"
	case has(t, "permission to use, copy, modify, and/or distribute this software"),
		has(t, "permission to use, copy, modify, and distribute this software"):
		return "ISC"
	case has(t, "the author disclaims copyright to this source code"):
		return "public-domain"
	}
	return ""
}

// apacheText matches a full copy of the Apache License 2.0 inside a file that quotes many
// licenses. Debian wants a pointer to /usr/share/common-licenses/Apache-2.0 instead.
var apacheText = regexp.MustCompile(`(?s)Apache License\s+Version 2\.0, January 2004.*?END OF TERMS AND CONDITIONS`)

func elideApache(text []byte) []byte {
	return apacheText.ReplaceAll(text, []byte("[The Apache License, Version 2.0: on Debian systems the full text is in\n/usr/share/common-licenses/Apache-2.0.]"))
}

// writeIndented copies text indented by two spaces, tabs expanded, trailing space trimmed.
func writeIndented(w io.Writer, text []byte) {
	s := strings.ReplaceAll(string(text), "\r\n", "\n")
	s = strings.ReplaceAll(s, "\t", "    ")
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		line = strings.TrimRight(line, " ")
		if line == "" {
			fmt.Fprintln(w)
			continue
		}
		fmt.Fprintf(w, "  %s\n", line)
	}
}
