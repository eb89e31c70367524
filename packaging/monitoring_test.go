package packaging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/popgate/popgate/gateway/metrics"
	"github.com/popgate/popgate/gateway/plane"
)

// The alert rules and the dashboard shipped in packaging/monitoring (and in the .deb under
// /usr/share/popgate/monitoring).
const (
	alertRules      = "packaging/monitoring/popgate-alerts.yml"
	alertRulesTests = "packaging/monitoring/popgate-alerts_test.yml"
	dashboard       = "packaging/monitoring/grafana-dashboard.json"
)

// promtool returns the path of promtool, or skips t: make test-deps installs it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed: as root, make test-deps installs /usr/local/bin/promtool (from Debian's prometheus package)")
	}
	return p
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		return
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

// knownMetrics are the metric names a popgate node exports: those its collector describes
// (with every option on: per-peer series, a controller's nodes), the Go runtime's and the
// process's (metrics.NewRegistry), and Prometheus's own up.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	col, err := metrics.New(metrics.Config{Report: func() plane.Report { return plane.Report{} },
		Nodes: func() ([]metrics.Node, error) { return nil, nil }, MaxPeerSeries: 1})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *prometheus.Desc)
	go func() {
		for _, c := range []prometheus.Collector{col, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
			c.Describe(ch)
		}
		close(ch)
	}()
	// Desc has no accessor for its name; its String is stable: Desc{fqName: "…", ….
	name := regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)
	known := map[string]bool{"up": true}
	for d := range ch {
		m := name.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		known[m[1]] = true
	}
	if !known["popgate_backbone_link_up"] || !known["popgate_nodes"] || !known["go_goroutines"] {
		t.Fatalf("the collectors describe only %d metrics: %v", len(known), known)
	}
	return known
}

// promqlMetrics returns the metric names a PromQL expression selects, each once, in order.
// It is a lexer, not a parser, enough for the expressions shipped here: it skips strings,
// label matchers {…}, ranges […], numbers and durations, Grafana's $variables, functions
// and aggregations (a name before "("), the label lists of by, without, on, ignoring,
// group_left and group_right, and keywords and aggregations.
func promqlMetrics(expr string) []string {
	keywords := map[string]bool{"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true,
		"ignoring": true, "group_left": true, "group_right": true, "offset": true, "bool": true, "atan2": true,
		"inf": true, "nan": true}
	// Aggregations, which may come before their by or without clause: sum by (x) (…).
	for _, a := range []string{"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"} {
		keywords[a] = true
	}
	labelLists := map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	// skipTo returns the index past the close that matches the open at i, skipping strings.
	skipTo := func(i int, open, close byte) int {
		depth := 0
		for ; i < len(expr); i++ {
			switch c := expr[i]; c {
			case '"', '\'', '`':
				for i++; i < len(expr) && expr[i] != c; i++ {
					if expr[i] == '\\' && c != '`' {
						i++
					}
				}
			case open:
				depth++
			case close:
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	var out []string
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end := strings.IndexByte(expr[i+1:], c) // (no escaped quotes in what is shipped)
			if end < 0 {
				return out
			}
			i += end + 2
		case c == '{':
			i = skipTo(i, '{', '}')
		case c == '[':
			i = skipTo(i, '[', ']')
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				i = skipTo(i, '{', '}')
			}
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdent(c, true):
			start := i
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
			word := expr[start:i]
			next := i
			for next < len(expr) && (expr[next] == ' ' || expr[next] == '\t' || expr[next] == '\n') {
				next++
			}
			paren := next < len(expr) && expr[next] == '('
			switch {
			case labelLists[word] && paren:
				i = skipTo(next, '(', ')')
			case keywords[word] || paren:
			case !slices.Contains(out, word):
				out = append(out, word)
			}
		default:
			i++
		}
	}
	return out
}

func TestPromQLMetrics(t *testing.T) {
	for _, c := range []struct{ expr, want string }{
		{`up{job="popgate"} == 0`, "up"},
		{`absent(up{job="popgate"})`, "up"},
		{`sum by (tenant) (rate(popgate_tenant_received_bytes_total{job="$job",instance=~"$instance",tenant=~"$tenant"}[$__rate_interval])) * 8`,
			"popgate_tenant_received_bytes_total"},
		{`popgate_exit_sockets > 0.9 * popgate_exit_sockets_max`, "popgate_exit_sockets popgate_exit_sockets_max"},
		{`(popgate_node_applied_generation < on(instance, job) group_left popgate_desired_generation) and on(instance, job, node) popgate_node_connected == 1`,
			"popgate_node_applied_generation popgate_desired_generation popgate_node_connected"},
		{`popgate_backbone_link_up{node="x{1}"} * on (instance, job) group_left(name) popgate_node_info{job="$job"}`,
			"popgate_backbone_link_up popgate_node_info"},
		{`sum(rate(popgate_handshake_initiations_total[5m] offset 1h)) without (reason) / 1e3`, "popgate_handshake_initiations_total"},
		{`time() - popgate_node_last_seen_timestamp_seconds`, "popgate_node_last_seen_timestamp_seconds"},
		{`count(popgate_ready == 0) or vector(0)`, "popgate_ready"},
		{`{__name__="popgate_nodes"}`, ""}, // not used here; a selector by __name__ goes unseen
		{`popgate_nodes_typo{state="never"} > 0`, "popgate_nodes_typo"},
	} {
		if got := strings.Join(promqlMetrics(c.expr), " "); got != c.want {
			t.Errorf("%s: metrics %q, want %q", c.expr, got, c.want)
		}
	}
}

// checkNames fails t for each metric of expr that popgate does not export.
func checkNames(t *testing.T, known map[string]bool, where, expr string) {
	t.Helper()
	names := promqlMetrics(expr)
	if len(names) == 0 {
		t.Errorf("%s: no metric in %q", where, expr)
	}
	for _, n := range names {
		if !known[n] {
			t.Errorf("%s: %s is not a metric popgate exports (gateway/metrics): %s", where, n, expr)
		}
	}
}

// ruleExprs returns the expr of every rule in a rules file, by line: the value after
// "expr:", or the block under "expr: |" or "expr: >".
func ruleExprs(t *testing.T, path string) map[int]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	for i, l := range lines {
		v, ok := strings.CutPrefix(strings.TrimSpace(l), "expr:")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if strings.HasPrefix(v, "|") || strings.HasPrefix(v, ">") {
			var block []string
			for _, m := range lines[i+1:] {
				if strings.TrimSpace(m) != "" && indent(m) <= indent(l) {
					break
				}
				block = append(block, m)
			}
			v = strings.Join(block, "\n")
		}
		out[i+1] = v
	}
	return out
}

// TestAlertRules: the shipped alert rules pass `promtool check rules` and their unit tests
// (`promtool test rules`), and use only metrics popgate exports.
func TestAlertRules(t *testing.T) {
	known := knownMetrics(t)
	rules := fromRoot(t, alertRules)
	exprs := ruleExprs(t, rules)
	if len(exprs) < 10 {
		t.Errorf("%s has %d rules, want the alerts README lists", alertRules, len(exprs))
	}
	for line, expr := range exprs {
		checkNames(t, known, fmt.Sprintf("%s:%d", alertRules, line), expr)
	}
	runPromtool(t, "check", "rules", rules)
	runPromtool(t, "test", "rules", fromRoot(t, alertRulesTests))
}

// grafanaPanel is what the test reads of a dashboard panel.
type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's
}

// TestGrafanaDashboard: the shipped dashboard is JSON Grafana can import (a title, a uid, a
// data source variable every panel uses), and every query, the template variables' too,
// uses only metrics popgate exports and is PromQL promtool accepts.
func TestGrafanaDashboard(t *testing.T) {
	known := knownMetrics(t)
	b, err := os.ReadFile(fromRoot(t, dashboard))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []grafanaPanel `json:"panels"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: title %q, uid %q, %d panels", dashboard, d.Title, d.UID, len(d.Panels))
	}

	var exprs []string // for promtool, with the variables filled in
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__range", "1h", "$job", "popgate", "$instance", ".*", "$tenant", ".*")
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_]\w*\)$`)
	hasDatasource := false
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			hasDatasource = v.Name == "datasource" && v.Query == "prometheus"
		case "query":
			q, _ := v.Query.(map[string]any)
			s, _ := q["query"].(string)
			m := labelValues.FindStringSubmatch(s)
			if m == nil {
				t.Errorf("variable %s: query %q, want label_values(METRIC, LABEL)", v.Name, s)
				continue
			}
			checkNames(t, known, "variable "+v.Name, m[1])
			exprs = append(exprs, vars.Replace(m[1]))
		}
	}
	if !hasDatasource {
		t.Error(`no data source variable "datasource" of type prometheus: the dashboard would be tied to one Grafana's data source`)
	}

	ids := map[int]bool{}
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if ids[p.ID] {
				t.Errorf("%s: its id is taken", where)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
				t.Errorf("%s: grid position %+v outside the 24 columns", where, p.GridPos)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: data source %+v, want uid ${datasource}", where, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no query", where)
			}
			for _, tg := range p.Targets {
				checkNames(t, known, where+" query "+tg.RefID, tg.Expr)
				exprs = append(exprs, vars.Replace(tg.Expr))
			}
		}
	}
	walk(d.Panels)
	t.Logf("%s: %d panels, %d queries", dashboard, len(ids), len(exprs))

	// promtool parses PromQL in rules files: make one of the queries.
	var rf strings.Builder
	rf.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		q, _ := json.Marshal(e) // a JSON string is a YAML double-quoted scalar
		fmt.Fprintf(&rf, "      - record: dashboard:query_%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(path, []byte(rf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, "check", "rules", path)
}
