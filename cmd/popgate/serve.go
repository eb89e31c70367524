package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/popgate/popgate/gateway"
	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/nodesync"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

// controlSocketName is the control socket's file name inside the data dir.
const controlSocketName = "popgate.sock"

// The appliance's controller drives its own node in process.
var _ control.DataPlane = (*gateway.Node)(nil)

// runServe runs the node until ctx is cancelled, then shuts down in order: the HTTP servers,
// the controller, the node, the store and the data dir lock.
func runServe(ctx context.Context, sc ServeConfig, log *slog.Logger) error {
	if sc.ConfigFile != "" {
		log.Info("read config file", "path", sc.ConfigFile)
	}
	if path := os.Getenv("POPGATE_CPUPROFILE"); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			return err
		}
		defer stop()
		log.Info("writing a CPU profile until shutdown", "path", path)
	}
	raiseOpenFilesLimit(log)
	dd, err := openDataDir(ctx, sc.DataDir, log)
	if err != nil {
		return err
	}
	defer dd.Close()
	st := dd.store
	if _, err := st.Membership(ctx); err == nil || sc.Join != "" || !sc.hasRole("controller") {
		return runJoined(ctx, sc, dd, os.Hostname, log)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	// The controller accepts nodes on --controller-addr (nodesync over mutual TLS).
	var nodes *control.NodesConfig
	var nodeSrv *nodesync.Server // set before anything calls Links
	var nodeID *nodesync.Identity
	if sc.ControllerAddr != "" {
		if nodeID, err = nodesync.LoadIdentity(filepath.Join(sc.DataDir, nodesync.IdentityFileName)); err != nil {
			return err
		}
		nodes = &control.NodesConfig{Addr: sc.ControllerAddr, Pin: nodeID.Pin(), Links: func() map[string]nodesync.Link { return nodeSrv.Links() }}
	}
	gcfg := sc.Gateway
	if gcfg.PrivateKey, err = st.NodePrivateKey(ctx); err != nil {
		return err
	}
	// The controller's own node has a backbone only when other nodes can reach it
	// (--backbone-endpoint): serve without it binds no second socket.
	if sc.BackboneEndpoint != "" {
		if gcfg.BackboneKey, err = st.BackbonePrivateKey(ctx); err != nil {
			return err
		}
	}
	gcfg.Overlay.V4, gcfg.Overlay.V6 = st.OverlayPrefixes()
	gcfg.Overlay.Gateway4, gcfg.Overlay.Gateway6 = st.GatewayAddrs()
	// The controller's own node reads the tenants' blocklists from the store.
	gcfg.Blobs = st.Blob
	// A controller alone runs no data plane: the PoPs that join it serve its clients.
	var node *gateway.Node
	var ctrlRef atomic.Pointer[control.Controller]
	var dp control.DataPlane
	ncfg := gcfg
	if sc.controllerOnly() {
		dp = newNoDataPlane(gcfg.NodeName, gcfg.Version, gcfg.Region)
		if sc.PublicEndpoint == "" {
			log.Warn("this controller serves no clients (--roles controller), and configs of its own region point at it: set --public-endpoint to where that region's PoPs are, or give peers configs of other regions (--region)", "region", gcfg.Region)
		}
	} else {
		// The node's events (links, failovers) go to the controller's event log directly;
		// the controller is made next, and the node sees none before it starts.
		gcfg.OnEvent = func(e plane.Event) {
			if c := ctrlRef.Load(); c != nil {
				c.Event(e)
			}
		}
		if node, err = gateway.New(gcfg, log); err != nil {
			return err
		}
		defer node.Close()
		dp, ncfg = node, node.Config()
	}
	// With a backbone, the other nodes know the controller's own node as "controller".
	var bb control.BackboneConfig
	if !gcfg.BackboneKey.IsZero() {
		bb = control.BackboneConfig{Endpoint: sc.BackboneEndpoint, PublicKey: node.BackbonePublicKey()}
		for _, r := range sc.Roles {
			if r == plane.RolePoP || r == plane.RoleExit {
				bb.Roles = append(bb.Roles, r)
			}
		}
	}
	ctrl, err := control.New(control.Config{
		PublicEndpoint: sc.PublicEndpoint,
		ListenPort:     ncfg.ListenPort,
		MTU:            ncfg.MTU,
		Region:         ncfg.Region,
		ClientDNS:      len(ncfg.DNSUpstreams) > 0,
		Nodes:          nodes,
		Backbone:       bb,
		Roles:          sc.Roles,
	}, st, dp, log.With("component", "control"))
	if err != nil {
		return err
	}
	ctrlRef.Store(ctrl)
	if node != nil {
		if err := node.Start(ctx); err != nil {
			return err
		}
	}
	defer ctrl.Close() // before node.Close
	if err := ctrl.Start(ctx); err != nil {
		return err
	}
	if nodes != nil {
		if nodeSrv, err = nodesync.NewServer(nodesync.ServerConfig{Identity: nodeID, Registry: st, Source: ctrl, Blobs: ctrl.BlocklistBlob}, log.With("component", "nodesync")); err != nil {
			return err
		}
		nl, err := net.Listen("tcp", sc.ControllerAddr)
		if err != nil {
			return fmt.Errorf("controller addr %s: %w: choose another --controller-addr", sc.ControllerAddr, err)
		}
		nodeDone := make(chan struct{})
		go func() {
			defer close(nodeDone)
			if err := nodeSrv.Serve(nl); !errors.Is(err, http.ErrServerClosed) {
				log.Error("the node listener stopped", "err", err)
			}
		}()
		defer func() { // before ctrl.Close
			nodeSrv.Close()
			<-nodeDone
		}()
		log.Info("accepting nodes (mutual TLS)", "controller_addr", nl.Addr().String(), "pin", nodeID.Pin().String())
	}
	log.Info("popgate is serving", "public_endpoint", ctrl.Config().PublicEndpoint)
	facts := controllerFacts(ctrl, sc.Roles)
	ready := readiness(dp.Report, facts)
	stopMetrics, err := startMetrics(sc, dp.Report, facts, controllerNodes(ctrl), ready, log.With("component", "metrics"))
	if err != nil {
		return err
	}
	defer stopMetrics() // before ctrl.Close
	if os.Getenv("GOGC") == "" && node != nil {
		pacer := newGCPacer(node.DeviceBufferBytes, log.With("component", "gc"))
		pacerCtx, stopPacer := context.WithCancel(ctx)
		pacerDone := make(chan struct{})
		go func() {
			defer close(pacerDone)
			pacer.run(pacerCtx)
		}()
		defer func() { // before node.Close
			stopPacer()
			<-pacerDone
		}()
	}
	pages, err := webui.NewUI(ctrl, st, nil, log.With("component", "ui"))
	if err != nil {
		return err
	}
	if err := pages.SetPublicURL(sc.PublicURL); err != nil {
		return err
	}
	// The web server also wraps the control socket's API, so that CLI changes are audited.
	web, err := webui.NewServer(webui.ServerConfig{
		Ctrl:        ctrl,
		Store:       st,
		Pages:       pages,
		Addr:        sc.WebAddr,
		TLSCertFile: sc.TLSCertFile,
		TLSKeyFile:  sc.TLSKeyFile,
		DataDir:     sc.DataDir,
		Log:         log.With("component", "web"),
		Ready:       ready,
	})
	if err != nil {
		return err
	}

	ctl, err := listenControl(filepath.Join(sc.DataDir, controlSocketName))
	if err != nil {
		return err
	}
	ctlSrv := &http.Server{Handler: web.ControlHandler(), ReadHeaderTimeout: 10 * time.Second}

	wl, err := net.Listen("tcp", sc.WebAddr)
	if err != nil {
		ctl.Close()
		return fmt.Errorf("web address %s: %w: choose another --web-addr", sc.WebAddr, err)
	}
	endpointHost, _, _ := net.SplitHostPort(ctrl.Config().PublicEndpoint)
	webURL := web.URL(wl.Addr(), endpointHost)
	log.Info("web endpoint listening", "addr", wl.Addr().String(), "url", webURL, "health", webURL+"healthz")
	if err := announceFirstAdmin(ctx, firstAdminStore{st}, os.Stderr, webURL, sc.AdminPasswordHash); err != nil {
		ctl.Close()
		wl.Close()
		return err
	}

	webCtx, stopWeb := context.WithCancel(ctx)
	defer stopWeb()
	ctlErr, webErr := make(chan error, 1), make(chan error, 1)
	go func() { ctlErr <- serveHTTP(ctlSrv, ctl) }()
	go func() { webErr <- web.Serve(webCtx, wl) }()

	webDone := false
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-ctlErr:
	case err = <-webErr:
		webDone = true
	}
	stopWeb()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctlSrv.Shutdown(shutdown)
	if !webDone {
		if werr := <-webErr; err == nil {
			err = werr
		}
	}
	return err
}

func serveHTTP(s *http.Server, l net.Listener) error {
	if err := s.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// listenControl creates the control socket, readable and writable by our user only. The data
// dir lock is held, so a socket file left there is stale.
func listenControl(path string) (net.Listener, error) {
	os.Remove(path)
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return l, nil
}

// startCPUProfile profiles the process into path until the returned stop is called. For
// benchmarks (POPGATE_CPUPROFILE); not a setting an operator needs.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("POPGATE_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("POPGATE_CPUPROFILE: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// raiseOpenFilesLimit raises the soft open files limit (RLIMIT_NOFILE) to the hard one: every
// flow through the userspace exit holds a socket, and the node budgets them out of this limit
// (see gateway's fdBudget). Go's runtime does the same on start; doing it here makes it
// explicit and says so in the log when it cannot.
func raiseOpenFilesLimit(log *slog.Logger) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot read the open files limit", "err", err)
		return
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			log.Warn("cannot raise the open files limit to its hard limit; raise it with LimitNOFILE= (systemd) or ulimit -n", "soft", rl.Cur, "hard", rl.Max, "err", err)
			return
		}
		rl = want
	}
	if rl.Cur < 4096 {
		log.Warn("the open files limit is low: the exit's flows share it with everything else; raise it with LimitNOFILE= (systemd) or ulimit -Hn", "limit", rl.Cur)
	}
}
