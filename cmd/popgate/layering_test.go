package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/popgate/popgate"

// layerRule says what a package (and everything it imports) may not depend on.
type layerRule struct {
	pkg string
	// notDeps are packages pkg may not import, directly or through others.
	notDeps []string
	// onlyPopgate, when set, are the only popgate packages pkg may import directly.
	onlyPopgate []string
	why         string
}

// layering is docs/architecture.md's "Layout": imports flow one way. cmd wires everything;
// webui → gateway/control → gateway/plane, store, firewall; the data plane gateway →
// gateway/wgmux, netstack, firewall, store; netstack, firewall and store import no other
// popgate package.
var layering = []layerRule{
	{pkg: "webui", notDeps: []string{"gateway", "gateway/wgmux", "netstack"},
		why: "the web UI and the API reach the data plane through the controller only"},
	{pkg: "gateway/control", notDeps: []string{"gateway", "gateway/wgmux", "netstack", "webui"},
		why: "the controller reaches a node, in process or remote, through control.DataPlane"},
	{pkg: "gateway/plane", onlyPopgate: []string{"store", "firewall"},
		why: "the desired state is plain data both sides share (and the policy view both compile against)"},
	{pkg: "gateway/nodesync", onlyPopgate: []string{"gateway/plane", "store"},
		why: "the node sync carries desired states and reports; what it syncs with is behind its interfaces"},
	{pkg: "gateway/control/webhook", onlyPopgate: []string{"store"},
		why: "the webhook sends what the event log holds; the controller tells it when"},
	{pkg: "gateway/metrics", onlyPopgate: []string{"gateway/plane"},
		why: "metrics are built from a node's report, which a remote node sends too"},
	{pkg: "gateway/wgmux", onlyPopgate: []string{"store", "gateway/internal/readturn"},
		why: "the shared socket knows keys, not tenants' state"},
	{pkg: "gateway/checks", onlyPopgate: []string{"gateway/plane", "store", "gateway/wgmux"},
		why: "checks run over the host's network on goroutines of their own, never in the packet path (the Mux lends them its handshake)"},
	{pkg: "gateway/backbone", onlyPopgate: []string{"store", "gateway/internal/udpbind"},
		why: "the backbone device carries labelled packets between nodes; the node wires it in, not the other way round"},
	{pkg: "gateway/internal/udpbind", onlyPopgate: []string{},
		why: "the UDP socket knows the kernel, not WireGuard's devices or popgate's state"},
	{pkg: "gateway/blocklist", onlyPopgate: []string{},
		why: "blocklists are parsed on the controller and matched on the nodes alike: a leaf both import"},
	{pkg: "netstack", onlyPopgate: []string{}, why: "netstack is a leaf"},
	{pkg: "firewall", onlyPopgate: []string{}, why: "firewall is a leaf"},
	{pkg: "store", onlyPopgate: []string{}, why: "store is a leaf: plain structs, no networking"},
}

// testOnly are packages for tests: no package may import them.
var testOnly = []string{"gateway/gatewaytest", "gateway/plane/planetest", "gateway/wgmux/wgmuxtest", "gateway/checks/checkstest"}

// goPackage is what go list says of a package: its direct and all its imports.
type goPackage struct{ imports, deps []string }

// layerViolations lists how pkgs break rules and testOnly. Package paths are relative to
// the module ("gateway/control").
func layerViolations(pkgs map[string]goPackage, rules []layerRule, testOnly []string) []string {
	var out []string
	for _, r := range rules {
		p, ok := pkgs[r.pkg]
		if !ok {
			out = append(out, fmt.Sprintf("package %s is gone: update the layering rules", r.pkg))
			continue
		}
		for _, bad := range r.notDeps {
			if slices.Contains(p.deps, bad) {
				via := "directly"
				if !slices.Contains(p.imports, bad) {
					via = "through " + strings.Join(importersOf(pkgs, p.deps, bad), ", ")
				}
				out = append(out, fmt.Sprintf("%s imports %s (%s): %s", r.pkg, bad, via, r.why))
			}
		}
		if r.onlyPopgate != nil {
			for _, imp := range p.imports {
				if !slices.Contains(r.onlyPopgate, imp) {
					out = append(out, fmt.Sprintf("%s imports %s: %s", r.pkg, imp, r.why))
				}
			}
		}
	}
	for name, p := range pkgs {
		for _, imp := range p.imports {
			if slices.Contains(testOnly, imp) {
				out = append(out, fmt.Sprintf("%s imports %s, which is for tests only", name, imp))
			}
		}
	}
	slices.Sort(out)
	return out
}

// importersOf returns those of deps that import bad directly.
func importersOf(pkgs map[string]goPackage, deps []string, bad string) []string {
	var out []string
	for _, d := range deps {
		if slices.Contains(pkgs[d].imports, bad) {
			out = append(out, d)
		}
	}
	return out
}

// listPackages runs go list over the module: every package with its popgate imports (not its
// tests'), relative to the module.
func listPackages(t *testing.T) map[string]goPackage {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	goBin, err := exec.LookPath("go") // go test puts its own first in PATH
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goBin, "list", "-f", "{{.ImportPath}}|{{join .Imports \",\"}}|{{join .Deps \",\"}}", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	rel := func(list string) []string {
		var ps []string
		for p := range strings.SplitSeq(list, ",") {
			if r, ok := strings.CutPrefix(p, module+"/"); ok {
				ps = append(ps, r)
			}
		}
		return ps
	}
	pkgs := map[string]goPackage{}
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		f := strings.Split(strings.TrimSpace(line), "|")
		if len(f) != 3 {
			t.Fatalf("go list printed %q", line)
		}
		name, _ := strings.CutPrefix(f[0], module+"/")
		pkgs[name] = goPackage{imports: rel(f[1]), deps: rel(f[2])}
	}
	return pkgs
}

// TestLayering fails when an import breaks the layering of docs/architecture.md.
func TestLayering(t *testing.T) {
	pkgs := listPackages(t)
	for _, v := range layerViolations(pkgs, layering, testOnly) {
		t.Error(v)
	}
}

// TestLayerViolations: the check reports a direct and an indirect import of the data plane,
// an import into a leaf, and a test helper in production code.
func TestLayerViolations(t *testing.T) {
	pkgs := map[string]goPackage{
		"webui":               {imports: []string{"gateway/control", "store"}, deps: []string{"gateway/control", "gateway", "store"}},
		"gateway/control":     {imports: []string{"gateway", "store"}, deps: []string{"gateway", "store"}},
		"gateway":             {imports: []string{"store"}, deps: []string{"store"}},
		"gateway/plane":       {imports: []string{"store"}, deps: []string{"store"}},
		"netstack":            {},
		"firewall":            {imports: []string{"gateway/gatewaytest"}, deps: []string{"gateway/gatewaytest"}},
		"store":               {imports: []string{"firewall"}, deps: []string{"firewall"}},
		"gateway/gatewaytest": {imports: []string{"gateway"}, deps: []string{"gateway"}},
		"gateway/wgmux":       {imports: []string{"store"}, deps: []string{"store"}},
	}
	for _, r := range layering { // every other rule's package, importing nothing
		if _, ok := pkgs[r.pkg]; !ok {
			pkgs[r.pkg] = goPackage{}
		}
	}
	want := []string{
		"firewall imports gateway/gatewaytest, which is for tests only",
		"firewall imports gateway/gatewaytest: firewall is a leaf",
		"gateway/control imports gateway (directly): the controller reaches a node, in process or remote, through control.DataPlane",
		"store imports firewall: store is a leaf: plain structs, no networking",
		"webui imports gateway (through gateway/control): the web UI and the API reach the data plane through the controller only",
	}
	if got := layerViolations(pkgs, layering, testOnly); !slices.Equal(got, want) {
		t.Errorf("violations:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
