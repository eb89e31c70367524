package packaging

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// Ports inside the test's network namespace that qemu forwards to the VM (user networking,
// hostfwd on 127.0.0.1 only). The namespace is the test's own, so fixed numbers are safe.
const (
	fwdWeb = 18080 // → VM 8080/tcp, popgate's web address
	fwdSSH = 12222 // → VM 22/tcp
	fwdWG  = 15182 // → VM 51820/udp, popgate's WireGuard port
)

// TestImageBoot boots the VM image under qemu (TCG) with a NoCloud seed, waits for popgate's
// health endpoint through a forwarded port, adds a peer over SSH and connects a stock
// WireGuard client (wireguard-go and wg) through a forwarded UDP port: a handshake and a ping
// to the node's overlay address.
func TestImageBoot(t *testing.T) {
	wantSlow(t, "image")
	requireTools(t, "qemu-system-x86_64", "qemu-img", "mkfs.vfat", "mcopy", "ssh", "ssh-keygen", "ip",
		"wireguard-go", "wg", "ping", "curl")
	image := os.Getenv("POPGATE_TEST_IMAGE")
	if image == "" {
		t.Skip("set POPGATE_TEST_IMAGE to the image to boot (make test-packaging does)")
	}
	image = fromRoot(t, image)
	const ovmfCode, ovmfVars = "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
	for _, f := range []string{image, ovmfCode, ovmfVars} {
		if _, err := os.Stat(f); err != nil {
			t.Fatal(err)
		}
	}
	work := t.TempDir()
	ns := newNetns(t)

	// The seed: an admin user for SSH (a key made now), and popgate's settings. The web
	// address listens on all of the VM's addresses so that the forwarded port reaches it.
	mustRun(t, time.Minute, work, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "popgate-test", "-f", "id")
	pub, err := os.ReadFile(filepath.Join(work, "id.pub"))
	if err != nil {
		t.Fatal(err)
	}
	seed := writeSeed(t, work, strings.TrimSpace(string(pub)))

	disk := filepath.Join(work, "disk.qcow2")
	mustRun(t, time.Minute, work, nil, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image, disk)
	mustRun(t, time.Minute, work, nil, "cp", ovmfVars, filepath.Join(work, "vars.fd"))
	serial := filepath.Join(work, "serial.log")
	qemu := exec.Command("ip", "netns", "exec", ns, "qemu-system-x86_64",
		"-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1024",
		"-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode,
		"-drive", "if=pflash,format=raw,file="+filepath.Join(work, "vars.fd"),
		"-drive", "file="+disk+",if=virtio,format=qcow2",
		"-drive", "file="+seed+",if=virtio,format=raw,readonly=on",
		"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:8080,hostfwd=tcp:127.0.0.1:%d-:22,hostfwd=udp:127.0.0.1:%d-:51820", fwdWeb, fwdSSH, fwdWG),
		"-device", "virtio-net-pci,netdev=n0",
		"-serial", "file:"+serial, "-display", "none", "-monitor", "none")
	qlog, err := os.Create(filepath.Join(work, "qemu.log"))
	if err != nil {
		t.Fatal(err)
	}
	qemu.Stdout, qemu.Stderr = qlog, qlog
	start := time.Now()
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	qemuDone := make(chan struct{})
	go func() { qemu.Wait(); close(qemuDone) }()
	t.Cleanup(func() {
		select {
		case <-qemuDone:
		default:
			qemu.Process.Signal(syscall.SIGTERM)
			select {
			case <-qemuDone:
			case <-time.After(10 * time.Second):
				qemu.Process.Kill()
				<-qemuDone
			}
		}
		if t.Failed() {
			data, _ := os.ReadFile(serial)
			t.Logf("serial console (last 60 lines):\n%s", tail(string(data), 60))
		}
	})
	inNS := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return run(ctx, "", nil, append([]string{"ip", "netns", "exec", ns}, args...)...)
	}

	// Boot to health: the first sign of a working appliance.
	var scheme string
	err = poll(6*time.Minute, time.Second, func() error {
		select {
		case <-qemuDone:
			data, _ := os.ReadFile(qlog.Name())
			return fmt.Errorf("qemu exited: %s", data)
		default:
		}
		scheme, err = healthz(inNS)
		return err
	})
	if err != nil {
		t.Fatalf("no health answer through 127.0.0.1:%d after %s: %v", fwdWeb, time.Since(start).Round(time.Second), err)
	}
	t.Logf("boot to health (qemu start → %s://127.0.0.1:%d/healthz through hostfwd): %s", scheme, fwdWeb, time.Since(start).Round(100*time.Millisecond))

	ssh := func(cmd string) (string, error) {
		return inNS(2*time.Minute, "ssh", "-i", filepath.Join(work, "id"), "-p", fmt.Sprint(fwdSSH),
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
			"-o", "ConnectTimeout=5", "-o", "BatchMode=yes", "admin@127.0.0.1", cmd)
	}
	var out string
	err = poll(3*time.Minute, 2*time.Second, func() error {
		out, err = ssh("sudo systemctl is-system-running --wait")
		if s := strings.TrimSpace(out); s == "running" || s == "degraded" {
			return nil
		}
		return fmt.Errorf("%q %v", out, err)
	})
	if err != nil {
		t.Fatalf("no SSH into the VM: %v", err)
	}
	t.Logf("boot finished (is-system-running answered over SSH): %s", time.Since(start).Round(100*time.Millisecond))
	if s := strings.TrimSpace(out); s != "running" {
		failed, _ := ssh("systemctl --failed --no-pager; sudo cloud-init status --long")
		t.Errorf("the VM booted into state %q, want running:\n%s", s, failed)
	}
	if boot, err := ssh("systemd-analyze"); err == nil {
		t.Logf("in the VM: %s", strings.TrimSpace(boot))
	}

	// Identity made on this boot, settings from the seed.
	checks, err := ssh(`set -e
		test -s /etc/machine-id
		ls /etc/ssh/ssh_host_ed25519_key >/dev/null
		hostname
		sudo grep -c 'region = "seed-region"' /etc/popgate/popgate.toml
		systemctl is-active popgate`)
	if err != nil {
		t.Fatal(err)
	}
	if want := "pop-test-1\n1\nactive\n"; checks != want {
		t.Errorf("in the VM: %q, want %q", checks, want)
	}

	// A peer, created by the admin over SSH.
	const dd = "--data-dir /var/lib/popgate"
	if _, err := ssh("sudo popgate tenant add acme " + dd); err != nil {
		t.Fatal(err)
	}
	conf, err := ssh("sudo popgate peer add --tenant acme laptop " + dd)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(conf, fmt.Sprintf("Endpoint = 127.0.0.1:%d", fwdWG)) || !strings.Contains(conf, "region seed-region") {
		t.Errorf("the peer's config does not carry the seed's endpoint and region:\n%s", conf)
	}

	// A stock client in the namespace: wireguard-go, configured with wg.
	start = time.Now()
	connectClient(t, ns, work, conf)
	err = poll(time.Minute, time.Second, func() error {
		_, err := inNS(10*time.Second, "ping", "-c", "1", "-W", "2", "100.64.0.1")
		return err
	})
	if err != nil {
		wgshow, _ := inNS(10*time.Second, "wg", "show")
		t.Fatalf("no ping to the node's overlay address 100.64.0.1 through the tunnel: %v\n%s", err, wgshow)
	}
	t.Logf("stock client: handshake and ping to 100.64.0.1 after %s", time.Since(start).Round(100*time.Millisecond))
	if hs, _ := inNS(10*time.Second, "wg", "show", wgIface, "latest-handshakes"); strings.HasSuffix(strings.TrimSpace(hs), "\t0") {
		t.Errorf("wg show: no handshake: %s", hs)
	}
	if list, err := ssh("sudo popgate peer list --tenant acme " + dd); err == nil {
		t.Logf("popgate peer list in the VM:\n%s", list)
	}
	if journal, err := ssh("sudo journalctl -u popgate -b -o cat --no-pager"); err == nil {
		if n := strings.Count(journal, `msg="starting popgate"`); n != 1 {
			t.Errorf("popgate started %d times on this boot, want 1:\n%s", n, journal)
		}
		if n := strings.Count(journal, "password"); n > 1 {
			t.Errorf("the journal mentions a password %d times, want at most once (the first admin's, on the first start)", n)
		}
		// The seed's admin_password_hash made the first admin: no password was printed.
		if !strings.Contains(journal, "created from --admin-password-hash") {
			t.Errorf("the first admin was not made from the seed's admin_password_hash:\n%s", journal)
		}
		if strings.Contains(journal, "ping through the exit is unavailable") {
			t.Errorf("the userspace exit cannot ping (sysctl 60-popgate.conf not applied?):\n%s", journal)
		}
	}

	// The same image joins a controller: a popgate controller in the test's namespace (the
	// .deb's binary), a token from it in /etc/popgate/popgate.toml (what the seed's
	// write_files would put there), and a restart of the service on a fresh data dir —
	// nothing else. The VM reaches the namespace's loopback at 10.0.2.2 (qemu's user
	// networking); the controller listens on 10.0.2.2 in the namespace, and that is the
	// address its tokens carry.
	joinController(t, ns, work, inNS, ssh)

	// A clean power-off.
	ssh("sudo systemctl poweroff")
	select {
	case <-qemuDone:
	case <-time.After(2 * time.Minute):
		t.Errorf("the VM did not power off within 2 minutes")
	}
}

// healthz asks the forwarded web port for /healthz and returns the scheme that answered:
// popgate serves HTTPS (its self-signed certificate, so not verified here) on a non-loopback
// web address, and plain HTTP did before the web UI landed.
func healthz(inNS func(time.Duration, ...string) (string, error)) (string, error) {
	url := fmt.Sprintf("127.0.0.1:%d/healthz", fwdWeb)
	var errs []string
	for _, scheme := range []string{"https", "http"} {
		out, err := inNS(10*time.Second, "curl", "-fsSk", "-m", "5", scheme+"://"+url)
		if err == nil && strings.Contains(out, `"ok"`) {
			return scheme, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %q %v", scheme, out, err))
	}
	return "", fmt.Errorf("%s", strings.Join(errs, "; "))
}

// writeSeed writes the NoCloud seed (a FAT file system labelled CIDATA, made with mtools:
// no loop device) and returns its path.
func writeSeed(t *testing.T, dir, sshKey string) string {
	t.Helper()
	userData := `#cloud-config
users:
  - name: admin
    groups: [sudo]
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    shell: /bin/bash
    lock_passwd: true
    ssh_authorized_keys:
      - ` + sshKey + `
write_files:
  - path: /etc/popgate/popgate.toml
    owner: root:popgate
    permissions: "0640"
    content: |
      region = "seed-region"
      public_endpoint = "127.0.0.1:` + fmt.Sprint(fwdWG) + `"
      web_addr = "0.0.0.0:8080"
      admin_password_hash = "` + testAdminHash(t) + `"
`
	metaData := "instance-id: popgate-test-1\nlocal-hostname: pop-test-1\n"
	for name, content := range map[string]string{"user-data": userData, "meta-data": metaData} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	seed := filepath.Join(dir, "seed.img")
	mustRun(t, time.Minute, dir, nil, "mkfs.vfat", "-C", "-n", "CIDATA", seed, "1024")
	mustRun(t, time.Minute, dir, nil, "mcopy", "-i", seed, "user-data", "meta-data", "::/")
	return seed
}

// newNetns creates a network namespace with loopback up; cleanup deletes it.
func newNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("pgimg-%d", os.Getpid())
	mustRun(t, time.Minute, "", nil, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	mustRun(t, time.Minute, "", nil, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// wgIface is the client's interface; its UAPI socket lives in the host-wide /var/run/wireguard.
var wgIface = fmt.Sprintf("pgimg%d", os.Getpid()%100000)

// connectClient runs wireguard-go in ns and configures it with wg from the wg-quick config
// conf (Address and DNS lines are wg-quick's: applied with ip here). Only the node's overlay
// address is routed into the tunnel.
func connectClient(t *testing.T, ns, dir, conf string) {
	t.Helper()
	var priv, addr, peerKey, endpoint string
	section := ""
	for _, line := range strings.Split(conf, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch section + k {
		case "[Interface]PrivateKey":
			priv = v
		case "[Interface]Address":
			addr = strings.TrimSpace(strings.Split(v, ",")[0])
		case "[Peer]PublicKey":
			peerKey = v
		case "[Peer]Endpoint":
			endpoint = v
		}
	}
	if priv == "" || addr == "" || peerKey == "" || endpoint == "" {
		t.Fatalf("cannot read the peer config:\n%s", conf)
	}
	if _, err := base64.StdEncoding.DecodeString(priv); err != nil {
		t.Fatalf("private key: %v", err)
	}
	keyFile := filepath.Join(dir, "client.key")
	if err := os.WriteFile(keyFile, []byte(priv+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := "/var/run/wireguard/" + wgIface + ".sock"
	wggo := exec.Command("ip", "netns", "exec", ns, "wireguard-go", "-f", wgIface)
	wggo.Env = append(os.Environ(), "LOG_LEVEL=error")
	if err := wggo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		wggo.Process.Signal(syscall.SIGTERM)
		wggo.Wait()
		os.Remove(sock)
	})
	if err := poll(15*time.Second, 100*time.Millisecond, func() error { _, err := os.Stat(sock); return err }); err != nil {
		t.Fatalf("wireguard-go did not start: %v", err)
	}
	mustRun(t, time.Minute, "", nil, "ip", "netns", "exec", ns, "wg", "set", wgIface,
		"private-key", keyFile, "peer", peerKey, "endpoint", endpoint, "allowed-ips", "100.64.0.1/32",
		"persistent-keepalive", "25")
	mustRun(t, time.Minute, "", nil, "ip", "-n", ns, "address", "add", addr, "dev", wgIface)
	mustRun(t, time.Minute, "", nil, "ip", "-n", ns, "link", "set", wgIface, "up")
	mustRun(t, time.Minute, "", nil, "ip", "-n", ns, "route", "add", "100.64.0.1/32", "dev", wgIface)
}

// testAdminHash is the hash of a throwaway password for the seed's admin_password_hash.
func testAdminHash(t *testing.T) string {
	t.Helper()
	h, err := store.HashPassword("seed password for the image test")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// joinController starts a controller in namespace ns, makes a join token and has the VM's
// popgate join it with the token in its config file and a restart; then the controller lists
// the VM as a connected node in sync, and the VM's status names its controller.
func joinController(t *testing.T, ns, work string, inNS func(time.Duration, ...string) (string, error), ssh func(string) (string, error)) {
	t.Helper()
	const ctlAddr = "10.0.2.2:17443"
	bin := filepath.Join(work, "deb-root", "usr", "bin", "popgate")
	mustRun(t, time.Minute, work, nil, "dpkg-deb", "-x", theDeb(t), filepath.Join(work, "deb-root"))
	mustRun(t, time.Minute, "", nil, "ip", "-n", ns, "address", "add", "10.0.2.2/32", "dev", "lo")
	// What qemu's user networking sends to 10.0.2.2 arrives at 127.0.0.1 in the namespace.
	mustRun(t, time.Minute, "", nil, "ip", "netns", "exec", ns, "iptables", "-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.1/32",
		"-p", "tcp", "--dport", "17443", "-j", "DNAT", "--to-destination", ctlAddr)
	ctlDir := filepath.Join(work, "controller")
	ctl := exec.Command("ip", "netns", "exec", ns, bin, "serve", "--data-dir", ctlDir, "--controller-addr", ctlAddr,
		"--listen-port", "17820", "--interface", fmt.Sprintf("pgctl%d", os.Getpid()%100000), "--web-addr", "127.0.0.1:17080",
		"--public-endpoint", fmt.Sprintf("127.0.0.1:%d", fwdWG), "--exit-mode", "userspace", "--metrics-addr", "off")
	ctlLog, err := os.Create(filepath.Join(work, "controller.log"))
	if err != nil {
		t.Fatal(err)
	}
	ctl.Stdout, ctl.Stderr = ctlLog, ctlLog
	if err := ctl.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctl.Process.Signal(syscall.SIGTERM)
		ctl.Wait()
		if t.Failed() {
			data, _ := os.ReadFile(ctlLog.Name())
			t.Logf("controller log:\n%s", tail(string(data), 40))
		}
	})
	cli := func(args ...string) (string, error) {
		return inNS(time.Minute, append(append([]string{bin}, args...), "--data-dir", ctlDir)...)
	}
	var token string
	err = poll(time.Minute, time.Second, func() error {
		out, err := cli("node", "token", "--roles", "pop,exit", "--name", "vm1")
		token = strings.TrimSpace(out)
		return err
	})
	if err != nil || !strings.HasPrefix(token, "popgate-join-1.") {
		t.Fatalf("node token on the controller: %q, %v", token, err)
	}
	out, err := ssh(`set -e
		sudo systemctl stop popgate
		sudo mv /var/lib/popgate /var/lib/popgate.appliance
		sudo install -d -m 0700 -o popgate -g popgate /var/lib/popgate
		echo 'join = "` + token + `"' | sudo tee -a /etc/popgate/popgate.toml >/dev/null
		sudo systemctl start popgate`)
	if err != nil {
		t.Fatalf("in the VM, give popgate the token and restart it: %v\n%s", err, out)
	}
	start := time.Now()
	err = poll(2*time.Minute, time.Second, func() error {
		out, err := cli("node", "list", "--json")
		if err != nil {
			return err
		}
		var l struct {
			Nodes []struct {
				Name      string `json:"name"`
				Connected bool   `json:"connected"`
				Applied   int64  `json:"applied_generation"`
				Current   int64  `json:"current_generation"`
			}
		}
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			return err
		}
		for _, n := range l.Nodes {
			if n.Name == "vm1" && n.Connected && n.Applied >= n.Current && n.Applied > 0 {
				return nil
			}
		}
		return fmt.Errorf("vm1 not connected and in sync: %s", out)
	})
	if err != nil {
		journal, _ := ssh("sudo journalctl -u popgate -b -o cat --no-pager | tail -n 30")
		t.Fatalf("the VM did not join the controller: %v\nthe VM's journal:\n%s", err, journal)
	}
	t.Logf("the VM joined the controller and synced %s after its restart", time.Since(start).Round(100*time.Millisecond))
	if st, err := ssh("sudo popgate status --data-dir /var/lib/popgate"); err != nil || !strings.Contains(st, ctlAddr) {
		t.Errorf("the VM's status does not name its controller %s: %v\n%s", ctlAddr, err, st)
	}
}
