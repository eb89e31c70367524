package packaging

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	root := repoRoot(t)
	tests := []struct {
		describe, when, want string
	}{
		{"v1.2.3-0-gabcdef12", "", "1.2.3"},
		{"v1.2.3-5-gabcdef12", "", "1.2.3+5.gabcdef12"},
		{"v1.2.3-5-gabcdef12-dirty", "", "1.2.3+5.gabcdef12+dirty"},
		{"v1.2.0-rc1-0-gabcdef12", "", "1.2.0~rc1"},
		{"v1.2.0-rc.1-2-g0123abcd", "", "1.2.0~rc.1+2.g0123abcd"},
		{"abcdef12", "20261124010203", "0.0.0~git20261124010203.gabcdef12"},
		{"abcdef12-dirty", "20261124010203", "0.0.0~git20261124010203.gabcdef12+dirty"},
	}
	for _, tt := range tests {
		args := []string{filepath.Join(root, "packaging", "version.sh"), tt.describe}
		if tt.when != "" {
			args = append(args, tt.when)
		}
		got := strings.TrimSpace(mustRun(t, 10*time.Second, root, nil, args...))
		if got != tt.want {
			t.Errorf("version.sh %s = %q, want %q", tt.describe, got, tt.want)
		}
	}
	// The order dpkg sees must follow the history: rc < release < later commits < dirty.
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("no dpkg to compare versions")
	}
	order := []string{"0.0.0~git20261124010203.gabcdef12", "0.0.0~git20261125000000.g00000000",
		"1.2.0~rc1", "1.2.0", "1.2.0+2.g0123abcd", "1.2.0+10.gabcdef12", "1.2.0+10.gabcdef12+dirty", "1.2.1"}
	for i := 1; i < len(order); i++ {
		if err := exec.Command("dpkg", "--compare-versions", order[i-1]+"-1", "lt", order[i]+"-1").Run(); err != nil {
			t.Errorf("dpkg does not sort %s before %s", order[i-1], order[i])
		}
	}
}

func TestScriptsParse(t *testing.T) {
	root := repoRoot(t)
	for _, f := range []string{"deb/postinst", "deb/prerm", "deb/postrm", "deb/profile.sh", "version.sh"} {
		mustRun(t, 10*time.Second, root, nil, "sh", "-n", filepath.Join(root, "packaging", f))
	}
	for _, f := range []string{"deb/build.sh", "image/build.sh", "deps.sh", "deb/popgate.bash-completion"} {
		mustRun(t, 10*time.Second, root, nil, "bash", "-n", filepath.Join(root, "packaging", f))
	}
}

// unitSettings reads a systemd unit file into key → values (in order).
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not key=value", path, line)
		}
		out[k] = append(out[k], v)
	}
	return out
}

// TestUnitHardening pins the sandbox of popgate.service and of the kernel-mode drop-in: a
// change here is a security decision, to be made in packaging/README.md too.
func TestUnitHardening(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "packaging", "deb")
	unit := unitSettings(t, filepath.Join(dir, "popgate.service"))
	want := map[string]string{
		"User":                    "popgate",
		"Group":                   "popgate",
		"ExecStart":               "/usr/bin/popgate serve",
		"Environment":             "POPGATE_DATA_DIR=/var/lib/popgate",
		"StateDirectory":          "popgate",
		"StateDirectoryMode":      "0700",
		"ConfigurationDirectory":  "popgate",
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
		"SystemCallFilter":        "@system-service",
		"SystemCallErrorNumber":   "EPERM",
		"WantedBy":                "multi-user.target",
	}
	for k, v := range want {
		if got := unit[k]; len(got) == 0 || got[0] != v {
			t.Errorf("popgate.service: %s=%q, want %q", k, got, v)
		}
	}
	dropin := unitSettings(t, filepath.Join(dir, "kernel-mode.conf"))
	for k, v := range map[string]string{
		"CapabilityBoundingSet": "CAP_NET_ADMIN",
		"AmbientCapabilities":   "CAP_NET_ADMIN",
		"PrivateDevices":        "no",
		"DeviceAllow":           "/dev/net/tun rw",
		"PrivateUsers":          "no",
		"ProtectKernelTunables": "no",
		"ProcSubset":            "all",
		"Environment":           "POPGATE_EXIT_MODE=kernel",
	} {
		if got := dropin[k]; len(got) != 1 || got[0] != v {
			t.Errorf("kernel-mode.conf: %s=%q, want %q", k, got, v)
		}
	}

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze for the exposure score")
	}
	out := mustRun(t, time.Minute, dir, nil, "systemd-analyze", "security", "--offline=true", "--no-pager", "./popgate.service")
	score := exposure(t, out)
	t.Logf("systemd-analyze security --offline=true popgate.service: exposure %.1f", score)
	// 1.1 when written (packaging/README.md); a higher score means a weaker sandbox.
	if score > 1.5 {
		t.Errorf("popgate.service exposure %.1f, want at most 1.5:\n%s", score, out)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

func exposure(t *testing.T, out string) float64 {
	t.Helper()
	m := exposureRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestBashCompletion completes command lines against a freshly built popgate, with stubs for
// the two bash-completion helpers the script uses.
func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	root := repoRoot(t)
	bin := t.TempDir()
	mustRun(t, 10*time.Minute, root, nil, "go", "build", "-o", filepath.Join(bin, "popgate"), "./cmd/popgate")
	completion := filepath.Join(root, "packaging", "deb", "popgate.bash-completion")
	tests := []struct {
		line string
		want []string // all must be offered
		not  []string // none may be offered
	}{
		{"popgate ", []string{"serve", "tenant", "peer", "policy", "route", "status", "version", "help"}, nil},
		{"popgate pe", []string{"peer"}, []string{"serve"}},
		{"popgate help ", []string{"serve", "peer"}, nil},
		{"popgate peer ", []string{"add", "list", "config", "show", "set", "disable", "enable", "remove"}, nil},
		{"popgate peer add --", []string{"--tenant", "--group", "--qr", "--public-key", "--data-dir"}, []string{"--listen-port"}},
		{"popgate serve --", []string{"--config", "--listen-port", "--public-endpoint", "--exit-mode", "--dns-upstream"}, nil},
		{"popgate serve --exit-mode ", []string{"auto", "userspace", "kernel"}, nil},
		{"popgate serve --config ", []string{"<files>"}, nil},
		{"popgate status --", []string{"--json", "--data-dir"}, nil},
		{"popgate tenant set --split-tunnel ", []string{"on", "off"}, nil},
	}
	for _, tt := range tests {
		script := `
_init_completion() { words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; }
_filedir() { COMPREPLY=("<files>"); }
source "$1"
read -ra COMP_WORDS <<<"$2"
case $2 in *" ") COMP_WORDS+=("") ;; esac
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_popgate
printf '%s\n' "${COMPREPLY[@]}"
`
		out := mustRun(t, 30*time.Second, root, []string{"PATH=" + bin + ":" + os.Getenv("PATH")},
			"bash", "-c", script, "bash", completion, tt.line)
		offered := map[string]bool{}
		for _, w := range strings.Fields(out) {
			offered[w] = true
		}
		for _, w := range tt.want {
			if !offered[w] {
				t.Errorf("completing %q offers %q, want it to include %q", tt.line, strings.Fields(out), w)
			}
		}
		for _, w := range tt.not {
			if offered[w] {
				t.Errorf("completing %q offers %q, which it should not", tt.line, w)
			}
		}
	}
}
