package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/popgate/popgate/gateway"
	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/metrics"
	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

// ServeConfig is what `popgate serve` hands to runServe. It is built from the defaults, the
// config file, the environment and the flags, each overriding the one before, and validated.
type ServeConfig struct {
	// DataDir holds the database, the key file, the lock and the control socket. Default
	// ./popgate-data.
	DataDir string
	// Gateway configures the node's data plane. Its Validate has run, so every default is
	// filled in; NodeName defaults to the host name and Version is the binary's version.
	// Its PrivateKey and Overlay come from the store when serve starts.
	Gateway gateway.Config
	// PublicEndpoint is the host:port client configs connect to, checked by
	// control.ValidateEndpoint. Default "": the controller guesses.
	PublicEndpoint string
	// WebAddr is the host:port the web UI listens on. Default 127.0.0.1:8080.
	WebAddr string
	// MetricsAddr is the host:port of the Prometheus /metrics, /healthz and /readyz
	// listener. Default 127.0.0.1:9586; "" turns it off.
	MetricsAddr string
	// MetricsPeers is how many peers get per-peer series (metrics.Config.MaxPeerSeries).
	// Default 0: none.
	MetricsPeers int
	// PublicURL is the address people reach the web UI at, for one-time download links,
	// checked by webui.ParsePublicURL. Default "": links point at the address the admin
	// browsed.
	PublicURL string
	// LogLevel is the lowest level logged. Default info.
	LogLevel slog.Level
	// LogFormat is "text" or "json". Default "text".
	LogFormat string
	// ConfigFile is the config file that was read, "" if none.
	ConfigFile string
	// TLSCertFile and TLSKeyFile are the web UI's PEM certificate and key, both or neither.
	// Default: none, so HTTPS with a self-signed certificate on a non-loopback WebAddr.
	TLSCertFile, TLSKeyFile string
	// AdminPasswordHash, when set, is the first admin's password hash (PHC string).
	AdminPasswordHash string

	// Roles are the node's roles: controller, pop and exit, in that order. Default all
	// three: the appliance.
	Roles []string
	// ControllerAddr, when set, is the host:port the controller accepts nodes on (mutual
	// TLS), also written into join tokens. Default "": it accepts none.
	ControllerAddr string
	// Join is the join token a node joins its controller with on first start. Default "".
	Join string
	// NodeNameSet says whether the node's name was given (not the host name).
	NodeNameSet bool
	// BackboneEndpoint is the host:port other nodes reach this node's backbone at, told to
	// the controller at join. Default "".
	BackboneEndpoint string
}

// hasRole reports whether the node has role.
func (sc *ServeConfig) hasRole(role string) bool { return slices.Contains(sc.Roles, role) }

// controllerOnly reports whether the node is a controller and nothing else: it runs no data
// plane (no WireGuard socket, no exit), only the control plane for the nodes that join it.
func (sc *ServeConfig) controllerOnly() bool {
	return len(sc.Roles) == 1 && sc.Roles[0] == "controller"
}

const (
	defaultDataDir = "popgate-data"
	envPrefix      = "POPGATE_"
	envConfig      = envPrefix + "CONFIG"
	envDataDir     = envPrefix + "DATA_DIR"
)

// serveSettings are the serve settings as given, before validation.
type serveSettings struct {
	DataDir        string
	ListenPort     int
	PublicEndpoint string
	WebAddr        string
	MetricsAddr    string
	MetricsPeers   int
	PublicURL      string
	Interface      string
	MTU            int
	ExitMode       string
	Region         string
	NodeName       string
	DNSUpstream    []string
	LogLevel       string
	LogFormat      string
	TLSCert        string
	TLSKey         string
	AdminPassHash  string
	Roles          string
	ControllerAddr string
	Join           string
	Backbone       string
	BackbonePort   int
}

func defaultServeSettings() serveSettings {
	return serveSettings{
		DataDir:    defaultDataDir,
		ListenPort: gateway.DefaultListenPort,
		WebAddr:    webui.DefaultAddr,
		Interface:  gateway.DefaultInterface,
		MTU:        gateway.DefaultMTU,
		ExitMode:   gateway.DefaultExitMode,
		Region:     gateway.DefaultRegion,
		LogLevel:   "info",
		LogFormat:  "text",
		Roles:      "controller,pop,exit",

		BackbonePort: gateway.DefaultBackbonePort,
		MetricsAddr:  defaultMetricsAddr,
	}
}

// setting is one serve setting: a flag --name, the environment variable POPGATE_NAME and the
// config file key name (with '_' for '-').
type setting struct {
	name  string
	usage string // help text; a `quoted` word names the value
	// defText describes a default that is not a plain value; empty: the value in
	// defaultServeSettings.
	defText string
	// field returns the setting's field in s: a *string, *int or *[]string.
	field func(s *serveSettings) any
}

func (st *setting) env() string { return envPrefix + strings.ToUpper(st.key()) }
func (st *setting) key() string { return strings.ReplaceAll(st.name, "-", "_") }

// serveSettingsTable lists the serve settings in the order of the help text.
var serveSettingsTable = []setting{
	{name: "data-dir", usage: "`DIR` for the database, keys and the control socket popgate.sock",
		field: func(s *serveSettings) any { return &s.DataDir }},
	{name: "listen-port", usage: "UDP `PORT` of the WireGuard device",
		field: func(s *serveSettings) any { return &s.ListenPort }},
	{name: "public-endpoint", usage: "`HOST:PORT` that client configs connect to",
		defText: "first global unicast address (IPv4 first) and the listen port",
		field:   func(s *serveSettings) any { return &s.PublicEndpoint }},
	{name: "web-addr", usage: "`HOST:PORT` the web UI listens on: plain HTTP on loopback, HTTPS elsewhere",
		field: func(s *serveSettings) any { return &s.WebAddr }},
	{name: "metrics-addr", usage: "`HOST:PORT` of the Prometheus /metrics, /healthz and /readyz listener (plain HTTP); empty or off turns it off",
		field: func(s *serveSettings) any { return &s.MetricsAddr }},
	{name: "metrics-peers", usage: "`N` peers get series of their own in /metrics (the first by tenant and name; 0: none, at most 10000)",
		field: func(s *serveSettings) any { return &s.MetricsPeers }},
	{name: "public-url", usage: "`URL` people reach the web UI at (https://vpn.example.com): one-time download links start with it",
		defText: "links point at the address the admin's browser used",
		field:   func(s *serveSettings) any { return &s.PublicURL }},
	{name: "tls-cert", usage: "PEM certificate `FILE` of the web UI (with --tls-key), read again when it changes",
		defText: "a self-signed certificate in the data dir on a non-loopback --web-addr",
		field:   func(s *serveSettings) any { return &s.TLSCert }},
	{name: "tls-key", usage: "PEM private key `FILE` of --tls-cert",
		field: func(s *serveSettings) any { return &s.TLSKey }},
	{name: "admin-password-hash", usage: "argon2id `HASH` of the first admin's password (from 'popgate admin hash-password'); used only when there is no admin yet, instead of printing a generated one",
		field: func(s *serveSettings) any { return &s.AdminPassHash }},
	{name: "interface", usage: "`NAME` of the WireGuard device (wg show NAME)",
		field: func(s *serveSettings) any { return &s.Interface }},
	{name: "mtu", usage: "`MTU` of the tunnel, also written into client configs",
		field: func(s *serveSettings) any { return &s.MTU }},
	{name: "exit-mode", usage: "`MODE` of the internet exit: auto, userspace (no privileges) or kernel (needs CAP_NET_ADMIN)",
		field: func(s *serveSettings) any { return &s.ExitMode }},
	{name: "region", usage: "`NAME` of the region this node serves: 1-32 lower-case letters, digits and '-', e.g. fra or us-east-1",
		field: func(s *serveSettings) any { return &s.Region }},
	{name: "node-name", usage: "`NAME` of this node", defText: "the host name",
		field: func(s *serveSettings) any { return &s.NodeName }},
	{name: "dns-upstream", usage: "comma-separated `LIST` of ip[:port] resolvers the in-tunnel DNS forwards to and DNS checks ask",
		defText: "the nameservers of /etc/resolv.conf",
		field:   func(s *serveSettings) any { return &s.DNSUpstream }},
	{name: "roles", usage: "comma-separated `ROLES` of this node: controller, pop, exit (all three: the appliance; controller alone carries no traffic); a node without controller joins one (--join)",
		field: func(s *serveSettings) any { return &s.Roles }},
	{name: "controller-addr", usage: "`HOST:PORT` the controller accepts nodes on (mutual TLS), written into join tokens ('popgate node token')",
		defText: "none: no nodes join",
		field:   func(s *serveSettings) any { return &s.ControllerAddr }},
	{name: "join", usage: "join `TOKEN` ('popgate node token' on the controller): on first start the node joins that controller and keeps its identity in the data dir; later starts need no token",
		defText: "none",
		field:   func(s *serveSettings) any { return &s.Join }},
	{name: "backbone-endpoint", usage: "`HOST:PORT` other nodes reach this node's backbone at, told to the controller when the node joins",
		defText: "none",
		field:   func(s *serveSettings) any { return &s.Backbone }},
	{name: "backbone-port", usage: "UDP `PORT` of the backbone, the node-to-node WireGuard device, which a node runs only with --backbone-endpoint",
		field: func(s *serveSettings) any { return &s.BackbonePort }},
	{name: "log-level", usage: "`LEVEL`: debug, info, warn or error",
		field: func(s *serveSettings) any { return &s.LogLevel }},
	{name: "log-format", usage: "`FORMAT` of the log on stderr: text or json",
		field: func(s *serveSettings) any { return &s.LogFormat }},
}

func lookupSetting(key string) *setting {
	for i := range serveSettingsTable {
		if serveSettingsTable[i].key() == key {
			return &serveSettingsTable[i]
		}
	}
	return nil
}

// defaultText is the default as the help shows it.
func (st *setting) defaultText() string {
	if st.defText != "" {
		return st.defText
	}
	d := defaultServeSettings()
	switch p := st.field(&d).(type) {
	case *string:
		return *p
	case *int:
		return strconv.Itoa(*p)
	}
	return ""
}

// set parses a flag or environment value into the setting's field of dst.
func (st *setting) set(dst *serveSettings, v string) error {
	v = strings.TrimSpace(v)
	switch p := st.field(dst).(type) {
	case *string:
		*p = v
	case *int:
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("not a whole number")
		}
		*p = n
	case *[]string:
		*p = splitList(v)
	}
	return nil
}

// copyTo copies the setting's field from src to dst.
func (st *setting) copyTo(dst, src *serveSettings) {
	switch p := st.field(dst).(type) {
	case *string:
		*p = *st.field(src).(*string)
	case *int:
		*p = *st.field(src).(*int)
	case *[]string:
		*p = *st.field(src).(*[]string)
	}
}

func splitList(v string) []string {
	var out []string
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// settingFlag is the flag.Value of a serve setting; it writes into the flag layer.
type settingFlag struct {
	st  *setting
	dst *serveSettings
}

func (f *settingFlag) String() string {
	if f == nil || f.st == nil {
		return ""
	}
	return f.st.defaultText()
}

func (f *settingFlag) Set(v string) error { return f.st.set(f.dst, v) }

// serveLoader gathers the layers of the serve settings.
type serveLoader struct {
	flags    *cmdFlags
	fromFlag serveSettings
	config   string // value of --config
	// origin names where each setting that is not a default came from, by flag name.
	origin map[string]string
}

var serveSpec = cmdSpec{
	name:  "serve",
	usage: "serve [flags]",
	about: "Run the gateway: the WireGuard device, the packet path, the web UI and the control socket " +
		"<data-dir>/popgate.sock that the other popgate commands use. It runs in the foreground and logs to " +
		"stderr; SIGINT or SIGTERM stop it.\n\n" +
		"Every flag can also be set by the environment variable shown below it and by the key of the same " +
		"name in the TOML config file (snake_case: listen_port = 51820, dns_upstream = [\"9.9.9.9\"]). " +
		"Flags override the environment, which overrides the file, which overrides the defaults.",
	example: "popgate serve --public-endpoint vpn.example.com:51820\n" +
		"POPGATE_LOG_LEVEL=debug popgate serve --config ./popgate.toml --data-dir ./popgate-data",
}

func newServeLoader() *serveLoader {
	l := &serveLoader{flags: newCmdFlags(serveSpec), origin: map[string]string{}}
	l.flags.String(&l.config, "config", "", "TOML config `FILE` (default: "+defaultConfigFile+" when it exists)")
	l.flags.notes["config"] = "env " + envConfig
	for i := range serveSettingsTable {
		st := &serveSettingsTable[i]
		l.flags.Var(&settingFlag{st: st, dst: &l.fromFlag}, st.name, st.usage,
			fmt.Sprintf("env %s, config file key %s", st.env(), st.key()))
	}
	return l
}

// loadServeConfig parses the serve command line and builds the ServeConfig from the
// defaults, the config file, the environment and the flags.
func (a *app) loadServeConfig(args []string) (ServeConfig, error) {
	l := newServeLoader()
	if _, err := l.flags.parse(a.stdout, args); err != nil {
		return ServeConfig{}, err
	}
	s := defaultServeSettings()

	file, err := a.serveConfigFile(l)
	if err != nil {
		return ServeConfig{}, err
	}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return ServeConfig{}, usagef("config %s: %v", file, unwrapPath(err))
		}
		keys, err := decodeConfigFile(file, data, &s)
		if err != nil {
			return ServeConfig{}, err
		}
		for _, k := range keys {
			l.origin[lookupSetting(k).name] = fmt.Sprintf("%s in %s", k, file)
		}
	}

	for i := range serveSettingsTable {
		st := &serveSettingsTable[i]
		v := a.getenv(st.env())
		if v == "" {
			continue
		}
		if err := st.set(&s, v); err != nil {
			return ServeConfig{}, usagef("environment variable %s=%q: %v", st.env(), v, err)
		}
		l.origin[st.name] = st.env()
	}

	for i := range serveSettingsTable {
		st := &serveSettingsTable[i]
		if l.flags.isSet(st.name) {
			st.copyTo(&s, &l.fromFlag)
			l.origin[st.name] = "--" + st.name
		}
	}

	sc, err := a.buildServeConfig(s, l.origin)
	if err != nil {
		return ServeConfig{}, err
	}
	sc.ConfigFile = file
	return sc, nil
}

// serveConfigFile picks the config file: --config, else POPGATE_CONFIG, else the default
// file when it exists. A file named explicitly must exist; an explicit "" means none.
func (a *app) serveConfigFile(l *serveLoader) (string, error) {
	named, by := "", ""
	switch {
	case l.flags.isSet("config"):
		named, by = l.config, "--config"
	case a.getenv(envConfig) != "":
		named, by = a.getenv(envConfig), envConfig
	default:
		if a.defaultConfig == "" {
			return "", nil
		}
		_, err := os.Stat(a.defaultConfig)
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		if err != nil {
			return "", usagef("config %s: %v", a.defaultConfig, unwrapPath(err))
		}
		return a.defaultConfig, nil
	}
	if named == "" {
		return "", nil
	}
	if _, err := os.Stat(named); errors.Is(err, fs.ErrNotExist) {
		return "", usagef("config file %s (named by %s) does not exist: create it or name another file", named, by)
	}
	return named, nil
}

// unwrapPath drops the path a *fs.PathError repeats: the message names the file already.
func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

// decodeConfigFile applies the TOML config file data (read from name) to s and returns the
// keys it set, in file order. Unknown keys and values of the wrong type are errors; each
// error is one line that names the file and, when known, the line.
func decodeConfigFile(name string, data []byte, s *serveSettings) ([]string, error) {
	// fail reports an error at the place where: "line 3", "line 3, column 7" or "".
	fail := func(where, format string, args ...any) error {
		if where != "" {
			where += ": "
		}
		return usagef("config %s: %s%s", name, where, fmt.Sprintf(format, args...))
	}
	atKey := func(key string) string {
		if n := keyLine(data, key); n > 0 {
			return fmt.Sprintf("line %d", n)
		}
		return ""
	}
	var raw map[string]any
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		if pe, ok := errors.AsType[toml.ParseError](err); ok {
			where := fmt.Sprintf("line %d, column %d", pe.Position.Line, pe.Position.Col)
			return nil, fail(where, "not valid TOML: %s", oneLine(pe.Message))
		}
		return nil, fail("", "not valid TOML: %s", oneLine(strings.TrimPrefix(err.Error(), "toml: ")))
	}

	var keys []string
	seen := map[string]bool{}
	for _, k := range md.Keys() {
		key := k[0]
		if seen[key] {
			continue
		}
		seen[key] = true
		st := lookupSetting(key)
		if st == nil {
			return nil, fail(atKey(key), "unknown key %q: see 'popgate serve --help' for the settings", key)
		}
		if err := st.setTOML(s, raw[key]); err != nil {
			return nil, fail(atKey(key), "%s %v", key, err)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// setTOML sets the setting's field of dst from a decoded TOML value.
func (st *setting) setTOML(dst *serveSettings, v any) error {
	switch p := st.field(dst).(type) {
	case *string:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("must be a string, not %s: write %s = \"...\"", tomlKind(v), st.key())
		}
		*p = strings.TrimSpace(s)
	case *int:
		n, ok := v.(int64)
		if !ok {
			return fmt.Errorf("must be a whole number, not %s: write %s = %s", tomlKind(v), st.key(), st.defaultText())
		}
		if int64(int(n)) != n {
			return fmt.Errorf("%d is out of range", n)
		}
		*p = int(n)
	case *[]string:
		list, ok := v.([]any)
		if !ok {
			return fmt.Errorf("must be an array of strings, not %s: write %s = [\"9.9.9.9\", \"[2620:fe::fe]:53\"]", tomlKind(v), st.key())
		}
		out := make([]string, 0, len(list))
		for _, e := range list {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("must be an array of strings, but holds %s: write %s = [\"9.9.9.9\", \"[2620:fe::fe]:53\"]", tomlKind(e), st.key())
			}
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		*p = out
	}
	return nil
}

// tomlKind names the TOML type of a decoded value for messages.
func tomlKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "a whole number"
	case float64:
		return "a fractional number"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return "a date or time"
	}
}

// keyLine finds the line (1-based) where the top-level key is first written, as a key or a
// table header; 0 if not found. The TOML package does not export key positions.
func keyLine(data []byte, key string) int {
	for i, line := range bytes.Split(data, []byte("\n")) {
		l := strings.TrimLeft(string(line), " \t")
		l = strings.TrimLeft(strings.TrimLeft(l, "["), " \t")
		for _, spelled := range []string{key, `"` + key + `"`, "'" + key + "'"} {
			rest, ok := strings.CutPrefix(l, spelled)
			if ok && (rest == "" || strings.ContainsAny(rest[:1], " \t=.]")) {
				return i + 1
			}
		}
	}
	return 0
}

// buildServeConfig validates s and turns it into a ServeConfig. origin names where each
// non-default setting came from, for messages.
func (a *app) buildServeConfig(s serveSettings, origin map[string]string) (ServeConfig, error) {
	bad := func(name string, format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		if o := origin[name]; o != "" {
			msg += " (set by " + o + ")"
		}
		return &usageError{msg: msg}
	}
	sc := ServeConfig{WebAddr: s.WebAddr, LogFormat: strings.ToLower(s.LogFormat), TLSCertFile: s.TLSCert, TLSKeyFile: s.TLSKey}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		name := "tls-cert"
		if s.TLSCert == "" {
			name = "tls-key"
		}
		return sc, bad(name, "--tls-cert and --tls-key go together: give the certificate and its key, or neither for a self-signed certificate")
	}

	if s.AdminPassHash != "" {
		if err := store.ValidatePasswordHash(s.AdminPassHash); err != nil {
			return sc, bad("admin-password-hash", "%s", strings.TrimPrefix(err.Error(), "invalid: "))
		}
		sc.AdminPasswordHash = s.AdminPassHash
	}
	if err := checkHostPort(s.WebAddr); err != nil {
		return sc, bad("web-addr", "web addr %q %v: use host:port, e.g. 127.0.0.1:8080 (all interfaces: 0.0.0.0:8080)", s.WebAddr, err)
	}
	switch s.MetricsAddr {
	case "", "off":
	default:
		if err := checkHostPort(s.MetricsAddr); err != nil {
			return sc, bad("metrics-addr", "metrics addr %q %v: use host:port, e.g. 127.0.0.1:9586 (all interfaces: 0.0.0.0:9586), or \"\" to turn it off", s.MetricsAddr, err)
		}
		sc.MetricsAddr = s.MetricsAddr
	}
	if s.MetricsPeers < 0 || s.MetricsPeers > metrics.MaxPeerSeriesLimit {
		return sc, bad("metrics-peers", "metrics peers %d is out of range: use 0 (no per-peer series) to %d", s.MetricsPeers, metrics.MaxPeerSeriesLimit)
	}
	sc.MetricsPeers = s.MetricsPeers
	if s.PublicURL != "" {
		u, err := webui.ParsePublicURL(s.PublicURL)
		if err != nil {
			return sc, bad("public-url", "%v", err)
		}
		sc.PublicURL = u
	}
	level, ok := parseLogLevel(s.LogLevel)
	if !ok {
		return sc, bad("log-level", "log level %q is unknown: use debug, info, warn or error", s.LogLevel)
	}
	sc.LogLevel = level
	switch sc.LogFormat {
	case "text", "json":
	default:
		return sc, bad("log-format", "log format %q is unknown: use text or json", s.LogFormat)
	}
	dns, err := parseUpstreams(s.DNSUpstream)
	if err != nil {
		return sc, bad("dns-upstream", "%v", err)
	}

	if !regionRE.MatchString(s.Region) {
		return sc, bad("region", "region %q is invalid: %s", s.Region, regionRule)
	}

	nodeName := s.NodeName
	if nodeName == "" {
		if h, err := a.hostname(); err == nil && h != "" {
			nodeName = h
		} else {
			nodeName = "popgate"
		}
	}
	if s.DataDir == "" {
		return sc, bad("data-dir", "data dir is empty: set --data-dir (or POPGATE_DATA_DIR) to a writable directory")
	}
	sc.DataDir = s.DataDir
	if s.PublicEndpoint != "" {
		if err := control.ValidateEndpoint(s.PublicEndpoint); err != nil {
			return sc, bad("public-endpoint", "%v", err)
		}
		sc.PublicEndpoint = s.PublicEndpoint
	}
	roles, err := parseServeRoles(s.Roles)
	if err != nil {
		return sc, bad("roles", "%v", err)
	}
	sc.Roles = roles
	if s.ControllerAddr != "" {
		if err := checkHostPort(s.ControllerAddr); err != nil {
			return sc, bad("controller-addr", "controller addr %q %v: use host:port, e.g. 203.0.113.10:7443", s.ControllerAddr, err)
		}
		if !sc.hasRole("controller") {
			return sc, bad("controller-addr", "--controller-addr is for a controller, and --roles %s has no controller: drop one or the other", s.Roles)
		}
		sc.ControllerAddr = s.ControllerAddr
	}
	if s.Join != "" {
		if sc.hasRole("controller") && origin["roles"] != "" {
			return sc, bad("join", "--join makes this node part of another controller's network, but --roles %s includes controller: give --roles pop, exit or pop,exit", s.Roles)
		}
		sc.Join = s.Join
	}
	if s.Backbone != "" {
		if err := checkHostPort(s.Backbone); err != nil {
			return sc, bad("backbone-endpoint", "backbone endpoint %q %v: use host:port, e.g. 203.0.113.1:51821", s.Backbone, err)
		}
		if len(roles) == 1 && roles[0] == "controller" && s.Join == "" {
			return sc, bad("backbone-endpoint", "--roles controller carries no tenant traffic, so it has no backbone: drop --backbone-endpoint, or add the pop or exit role")
		}
		sc.BackboneEndpoint = s.Backbone
	}
	sc.NodeNameSet = s.NodeName != ""
	sc.Gateway = gateway.Config{
		Interface:    s.Interface,
		ListenPort:   s.ListenPort,
		MTU:          s.MTU,
		ExitMode:     strings.ToLower(s.ExitMode),
		Region:       s.Region,
		NodeName:     nodeName,
		DNSUpstreams: dns,
		Version:      fullVersion(),
		BackbonePort: s.BackbonePort,
		NoExit:       !sc.hasRole("exit"),
	}
	if err := sc.Gateway.Validate(); err != nil {
		return sc, &usageError{msg: err.Error() + blame(sc.Gateway, err, origin)}
	}
	return sc, nil
}

// blame finds the one setting that makes Validate fail with err, to name where it was set.
// It returns "" when no single setting explains the error.
func blame(bad gateway.Config, err error, origin map[string]string) string {
	fields := map[string]func(dst *gateway.Config){
		"interface":     func(c *gateway.Config) { c.Interface = bad.Interface },
		"listen-port":   func(c *gateway.Config) { c.ListenPort = bad.ListenPort },
		"mtu":           func(c *gateway.Config) { c.MTU = bad.MTU },
		"exit-mode":     func(c *gateway.Config) { c.ExitMode = bad.ExitMode },
		"region":        func(c *gateway.Config) { c.Region = bad.Region },
		"node-name":     func(c *gateway.Config) { c.NodeName = bad.NodeName },
		"dns-upstream":  func(c *gateway.Config) { c.DNSUpstreams = bad.DNSUpstreams },
		"backbone-port": func(c *gateway.Config) { c.BackbonePort = bad.BackbonePort },
	}
	for _, st := range serveSettingsTable {
		o, apply := origin[st.name], fields[st.name]
		if o == "" || apply == nil {
			continue
		}
		c := gateway.Config{NodeName: "popgate"}
		apply(&c)
		if e := c.Validate(); e != nil && e.Error() == err.Error() {
			return " (set by " + o + ")"
		}
	}
	return ""
}

// parseServeRoles reads --roles: a comma-separated list of controller, pop and exit, returned
// in that order.
func parseServeRoles(s string) ([]string, error) {
	var out []string
	for _, known := range []string{"controller", "pop", "exit"} {
		for r := range strings.SplitSeq(s, ",") {
			if strings.TrimSpace(r) == known && !slices.Contains(out, known) {
				out = append(out, known)
			}
		}
	}
	for r := range strings.SplitSeq(s, ",") {
		if r = strings.TrimSpace(r); !slices.Contains(out, r) {
			return nil, fmt.Errorf("role %q is unknown: use controller, pop and exit, comma-separated (all three: the appliance)", truncateText(r, 40))
		}
	}
	return out, nil
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// A region's name is written into client configs and, with many nodes, into host names: a
// DNS label.
var regionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

const regionRule = "use 1-32 lower-case letters, digits and '-', starting with a letter or digit, e.g. fra or us-east-1"

// checkHostPort checks that s is [host]:port with a numeric port in 0-65535 (0: any free
// port, which tests use).
func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		if _, err := netip.ParseAddr(s); err == nil || !strings.Contains(s, ":") {
			return errors.New("has no port")
		}
		return errors.New("is not host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("has port %q: the port must be a number 0-65535", port)
	}
	return nil
}

func parseLogLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}

// parseUpstreams parses ip[:port] resolver addresses; the port defaults to 53.
func parseUpstreams(list []string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, s := range list {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			addr, err2 := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
			if err2 != nil {
				return nil, fmt.Errorf("dns upstream %q is not an IP address or ip:port: use e.g. 9.9.9.9 or [2620:fe::fe]:53", s)
			}
			ap = netip.AddrPortFrom(addr, 53)
		}
		if ap.Port() == 0 {
			return nil, fmt.Errorf("dns upstream %q has port 0: use a port 1-65535 or leave it out for 53", s)
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if ap.Addr().IsUnspecified() { // the userspace exit would refuse it at start
			return nil, fmt.Errorf("dns upstream %q is not a resolver's address: use the address of a DNS server, e.g. 9.9.9.9 or 127.0.0.53", s)
		}
		out = append(out, ap)
	}
	return out, nil
}
