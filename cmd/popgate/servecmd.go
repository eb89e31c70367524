package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// cmdServe runs `popgate serve`: config, logger, signals, then runServe until a signal.
func (a *app) cmdServe(ctx context.Context, args []string) error {
	sc, err := a.loadServeConfig(args)
	if err != nil {
		return err
	}
	log := newLogger(a.stderr, sc)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, a second one kills the process the default way, in case
		// shutting down hangs.
		<-ctx.Done()
		stop()
	}()

	configFile := sc.ConfigFile
	if configFile == "" {
		configFile = "none"
	}
	log.Info("starting popgate", "version", sc.Gateway.Version, "node", sc.Gateway.NodeName,
		"config_file", configFile, "data_dir", sc.DataDir)
	err = a.serve(ctx, sc, log)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil // stopped by a signal, as asked
	}
	return err
}

func newLogger(w io.Writer, sc ServeConfig) *slog.Logger {
	opts := &slog.HandlerOptions{Level: sc.LogLevel}
	if sc.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
