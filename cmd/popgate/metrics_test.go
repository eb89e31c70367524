package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// TestServeMetrics runs popgate serve in the process with --metrics-addr on loopback and
// scrapes it: /metrics lints clean (promlint, and `promtool check metrics` when promtool is
// installed) and carries the node's, a tenant's and the controller's node families;
// /healthz answers; /readyz, there and on the web address, says ready once the desired state
// is applied.
func TestServeMetrics(t *testing.T) {
	dir := t.TempDir()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port)
	c.Close()
	ta := newTestApp(t, nil)
	sc, err := ta.loadServeConfig([]string{"--data-dir", dir, "--web-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--metrics-peers", "10",
		"--listen-port", port, "--public-endpoint", "127.0.0.1:51820", "--exit-mode", "userspace",
		"--interface", fmt.Sprintf("pgm%d", os.Getpid()%100000), "--region", "fra", "--node-name", "pop-test"})
	if err != nil {
		t.Fatal(err)
	}
	logs := new(syncBuffer)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, sc, slog.New(slog.NewTextHandler(logs, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	addrOf := func(msg string) string {
		re := regexp.MustCompile(`msg="` + msg + `" .*\baddr=(\S+)`)
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if m := re.FindStringSubmatch(logs.String()); m != nil {
				return m[1]
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("serve did not log %q; log:\n%s", msg, logs.String())
		return ""
	}
	metricsAddr, webAddr := addrOf("metrics endpoint listening"), addrOf("web endpoint listening")
	// A tenant reaches the data plane with its first peer.
	for _, args := range [][]string{{"tenant", "add", "acme"}, {"peer", "add", "laptop", "--tenant", "acme", "--public-key", testPub}} {
		if code := newTestApp(t, nil).runArgs(append(args, "--data-dir", dir)...); code != exitOK {
			t.Fatalf("%s: exit %d", strings.Join(args, " "), code)
		}
	}

	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
	if code, body := get("http://" + metricsAddr + "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("http://" + metricsAddr + "/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if code, body := get("http://" + webAddr + "/readyz"); code != http.StatusOK || !strings.Contains(body, `"status":"ready"`) {
		t.Errorf("/readyz on the web address: %d %q", code, body)
	}

	code, text := get("http://" + metricsAddr + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, text)
	}
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, text)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^popgate_build_info\{goversion="go[^"]+",version="[^"]+"\} 1$`),
		regexp.MustCompile(`(?m)^popgate_node_info\{name="pop-test",region="fra",roles="controller,pop,exit"\} 1$`),
		regexp.MustCompile(`(?m)^popgate_applied_generation [1-9]`),
		regexp.MustCompile(`(?m)^popgate_desired_apply_failing 0$`),
		regexp.MustCompile(`(?m)^popgate_ready 1$`),
		regexp.MustCompile(`(?m)^popgate_nodes\{state="connected"\} 0$`), // a controller: its node list, empty
		regexp.MustCompile(`(?m)^# TYPE popgate_received_bytes_total counter$`),
		regexp.MustCompile(`(?m)^popgate_handshake_initiations_total 0$`),
		regexp.MustCompile(`(?m)^popgate_tenant_received_bytes_total\{tenant="acme"\} 0$`),
		regexp.MustCompile(`(?m)^popgate_tenant_policy_rule_hits_total\{rule="default",tenant="acme"\} 0$`),
		regexp.MustCompile(`(?m)^popgate_peers_without_series 0$`), // --metrics-peers
		regexp.MustCompile(`(?m)^go_goroutines `),
		regexp.MustCompile(`(?m)^process_start_time_seconds `),
	} {
		if !want.MatchString(text) {
			t.Errorf("/metrics has no line matching %s", want)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool is not installed (make test-deps installs it): /metrics was checked with promlint only")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out.String())
	}
}
