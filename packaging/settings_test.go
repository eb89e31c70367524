package packaging

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// serveSetting is one entry of serveSettingsTable in cmd/popgate/config.go.
type serveSetting struct {
	name   string // flag name: listen-port
	goType string // type of its serveSettings field: string, int or []string
}

func (s serveSetting) key() string { return strings.ReplaceAll(s.name, "-", "_") }
func (s serveSetting) env() string { return "POPGATE_" + strings.ToUpper(s.key()) }

// readServeSettings reads the settings table from cmd/popgate/config.go's source: the
// package is a main package, so the test cannot import it.
func readServeSettings(t *testing.T) []serveSetting {
	t.Helper()
	file := filepath.Join(repoRoot(t), "cmd", "popgate", "config.go")
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	fieldTypes := map[string]string{}
	var table *ast.CompositeLit
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.TypeSpec:
			if st, ok := n.Type.(*ast.StructType); ok && n.Name.Name == "serveSettings" {
				for _, fld := range st.Fields.List {
					for _, name := range fld.Names {
						fieldTypes[name.Name] = exprString(fld.Type)
					}
				}
			}
		case *ast.ValueSpec:
			for i, name := range n.Names {
				if name.Name == "serveSettingsTable" && i < len(n.Values) {
					table, _ = n.Values[i].(*ast.CompositeLit)
				}
			}
		}
		return true
	})
	if table == nil || len(fieldTypes) == 0 {
		t.Fatalf("%s: no serveSettingsTable or serveSettings found: update this test to the new layout", file)
	}
	var out []serveSetting
	for _, elt := range table.Elts {
		lit, ok := elt.(*ast.CompositeLit)
		if !ok {
			continue
		}
		var s serveSetting
		for _, e := range lit.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			switch exprString(kv.Key) {
			case "name":
				if bl, ok := kv.Value.(*ast.BasicLit); ok {
					s.name, _ = strconv.Unquote(bl.Value)
				}
			case "field":
				// func(s *serveSettings) any { return &s.Field }
				ast.Inspect(kv.Value, func(n ast.Node) bool {
					if sel, ok := n.(*ast.SelectorExpr); ok {
						s.goType = fieldTypes[sel.Sel.Name]
					}
					return true
				})
			}
		}
		if s.name == "" || s.goType == "" {
			t.Fatalf("%s: a settings table entry without a name or a field: update this test", file)
		}
		out = append(out, s)
	}
	if len(out) < 10 {
		t.Fatalf("%s: only %d settings found", file, len(out))
	}
	return out
}

func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.ArrayType:
		return "[]" + exprString(e.Elt)
	case *ast.StarExpr:
		return "*" + exprString(e.X)
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	}
	return fmt.Sprintf("%T", e)
}

// TestConffileDocumentsEverySetting checks that /etc/popgate/popgate.toml lists every serve
// setting as a commented-out example, and that uncommenting them all gives a file serve
// would accept: valid TOML, known keys, values of the right type.
func TestConffileDocumentsEverySetting(t *testing.T) {
	settings := readServeSettings(t)
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "packaging", "deb", "popgate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	example := regexp.MustCompile(`^#([a-z_]+) = `)
	var uncommented []string
	seen := map[string]int{}
	for i, line := range strings.Split(string(data), "\n") {
		if m := example.FindStringSubmatch(line); m != nil {
			seen[m[1]]++
			uncommented = append(uncommented, strings.TrimPrefix(line, "#"))
			continue
		}
		if trimmed := strings.TrimSpace(line); trimmed != "" && !strings.HasPrefix(trimmed, "#") {
			t.Errorf("popgate.toml:%d: %q sets a value: the packaged file keeps every setting at its default, commented out", i+1, line)
		}
	}
	for _, s := range settings {
		if seen[s.key()] != 1 {
			t.Errorf("popgate.toml documents setting %s (--%s) %d times, want once as `#%s = ...`", s.key(), s.name, seen[s.key()], s.key())
		}
	}
	known := map[string]serveSetting{}
	for _, s := range settings {
		known[s.key()] = s
	}
	var decoded map[string]any
	if _, err := toml.Decode(strings.Join(uncommented, "\n"), &decoded); err != nil {
		t.Fatalf("popgate.toml with every example uncommented is not valid TOML: %v", err)
	}
	for key, v := range decoded {
		s, ok := known[key]
		if !ok {
			t.Errorf("popgate.toml documents %s, which is not a serve setting (serve would refuse it)", key)
			continue
		}
		var okType bool
		switch s.goType {
		case "string":
			_, okType = v.(string)
		case "int":
			_, okType = v.(int64)
		case "[]string":
			list, isList := v.([]any)
			okType = isList
			for _, e := range list {
				if _, isString := e.(string); !isString {
					okType = false
				}
			}
		default:
			t.Fatalf("setting %s has type %s, which this test does not know", key, s.goType)
		}
		if !okType {
			t.Errorf("popgate.toml: the example of %s is a %T, serve wants %s", key, v, s.goType)
		}
	}
}

// TestManPageDocumentsEverySetting checks that popgate(8) names every serve setting (flag,
// environment variable and config key) and every command.
func TestManPageDocumentsEverySetting(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "packaging", "deb", "popgate.8"))
	if err != nil {
		t.Fatal(err)
	}
	// The page as text: roff escapes for '-' undone.
	page := strings.ReplaceAll(string(data), `\-`, "-")
	for _, s := range readServeSettings(t) {
		for _, want := range []string{"--" + s.name, s.env(), s.key()} {
			if !strings.Contains(page, want) {
				t.Errorf("popgate.8 does not mention %s (setting --%s)", want, s.name)
			}
		}
	}
	for _, cmd := range readCommands(t) {
		if !regexp.MustCompile(`(?m)^\.B ` + regexp.QuoteMeta(cmd) + `\b`).MatchString(page) {
			t.Errorf("popgate.8 has no .B %s entry for the command %s", cmd, cmd)
		}
	}
}

// readCommands reads the names of the top-level commands from cmd/popgate/main.go.
func readCommands(t *testing.T) []string {
	t.Helper()
	file := filepath.Join(repoRoot(t), "cmd", "popgate", "main.go")
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "commands" || len(vs.Values) != 1 {
			return true
		}
		for _, elt := range vs.Values[0].(*ast.CompositeLit).Elts {
			lit, ok := elt.(*ast.CompositeLit)
			if !ok || len(lit.Elts) == 0 {
				continue
			}
			if bl, ok := lit.Elts[0].(*ast.BasicLit); ok {
				name, _ := strconv.Unquote(bl.Value)
				names = append(names, name)
			}
		}
		return false
	})
	if len(names) < 5 {
		t.Fatalf("%s: found only %d commands in var commands: update this test", file, len(names))
	}
	return names
}
