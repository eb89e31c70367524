package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/metrics"
	"github.com/popgate/popgate/gateway/plane"
)

// defaultMetricsAddr is serve's --metrics-addr by default: loopback only, plain HTTP.
const defaultMetricsAddr = "127.0.0.1:9586"

// controllerFacts are the facts, for metrics and readiness, of a node with the controller
// role: its desired state comes from the controller in the process and is never stale.
func controllerFacts(ctrl *control.Controller, roles []string) func() metrics.Facts {
	return func() metrics.Facts {
		gen, err := ctrl.Published()
		f := metrics.Facts{Roles: roles, DesiredGeneration: gen, EventsDropped: ctrl.EventsDropped()}
		if err != nil {
			f.PublishError = err.Error()
		}
		return f
	}
}

// controllerNodes lists the nodes that joined ctrl, for the metrics of a controller.
func controllerNodes(ctrl *control.Controller) func() ([]metrics.Node, error) {
	return func() ([]metrics.Node, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ns, err := ctrl.Nodes(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]metrics.Node, len(ns))
		for i, n := range ns {
			out[i] = metrics.Node{Name: n.Name, Connected: n.Connected, LastSeen: n.LastSeen, AppliedGeneration: n.AppliedGeneration}
		}
		return out, nil
	}
}

// readiness says why the node does not serve yet (metrics.Ready), nil when it does.
func readiness(report func() plane.Report, facts func() metrics.Facts) func() error {
	return func() error { return metrics.Ready(report(), facts(), time.Now(), 0) }
}

// metricsHandler serves /metrics from gather's registry, /healthz (the process answers) and
// /readyz (ready says nil: 200, else 503 with its one-line reason), all as plain text.
func metricsHandler(h http.Handler, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// startMetrics serves /metrics, /healthz and /readyz on sc.MetricsAddr (nothing when it is
// "") until stop; nodes lists the nodes that joined a controller (nil on a joined node). An address that cannot be bound is an error, except the default one:
// another popgate on the host may hold it, so serve goes on without and says so.
func startMetrics(sc ServeConfig, report func() plane.Report, facts func() metrics.Facts, nodes func() ([]metrics.Node, error), ready func() error, log *slog.Logger) (stop func(), err error) {
	if sc.MetricsAddr == "" {
		return func() {}, nil
	}
	col, err := metrics.New(metrics.Config{Report: report, Facts: facts, Nodes: nodes, MaxPeerSeries: sc.MetricsPeers})
	if err != nil {
		return nil, err
	}
	reg, err := metrics.NewRegistry(col)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", sc.MetricsAddr)
	if err != nil {
		if sc.MetricsAddr == defaultMetricsAddr {
			log.Warn("no metrics endpoint: its default address is taken; choose another with --metrics-addr, or turn it off with --metrics-addr ''",
				"addr", sc.MetricsAddr, "err", err)
			return func() {}, nil
		}
		return nil, fmt.Errorf("metrics address %s: %w: choose another --metrics-addr, or turn it off with --metrics-addr ''", sc.MetricsAddr, err)
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		EnableOpenMetrics: true, // rule hit counters carry their start as _created
		Timeout:           10 * time.Second,
	})
	srv := &http.Server{Handler: metricsHandler(h, ready), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- serveHTTP(srv, l) }()
	url := "http://" + l.Addr().String()
	log.Info("metrics endpoint listening", "addr", l.Addr().String(), "metrics", url+"/metrics", "ready", url+"/readyz")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			log.Warn("stop the metrics endpoint", "err", err)
		}
		srv.Close()
		if err := <-done; err != nil {
			log.Warn("metrics endpoint", "err", err)
		}
	}, nil
}
