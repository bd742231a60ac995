// Command controller is the agentauth control plane: the built-in identity issuer (the embedded default when no
// SPIRE runs), the xDS server that pushes policy and revocations to every sidecar, and the admin socket that
// agentauthctl talks to.
//
//	controller -config /etc/agentauth/controller.yaml
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/agentauth/agentauth/internal/buildinfo"
	"github.com/agentauth/agentauth/internal/logging"
	"github.com/agentauth/agentauth/pkg/controller"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		os.Exit(1)
	}
}

func run() error {
	path := flag.String("config", "/etc/agentauth/controller.yaml", "path of the YAML config")
	check := flag.Bool("check", false, "validate the config and exit")
	version := flag.Bool("version", false, "print the version (from the build info) and exit")
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.Read().Line("controller"))
		return nil
	}
	cfg, err := controller.Load(*path)
	if err != nil {
		return err
	}
	if *check {
		fmt.Println("config OK")
		return nil
	}
	// The level belongs to main: SIGHUP changes it.
	level, err := zap.ParseAtomicLevel(cfg.Log.Level)
	if err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	log, err := logging.NewAtLevel(level)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	// SIGHUP is caught from here on: its default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		running := cfg
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				running = reload(log, level, *path, running)
			}
		}
	}()
	c, err := controller.New(ctx, cfg, log)
	if err != nil {
		log.Error("controller failed to start", zap.Error(err))
		return err
	}
	return c.Run(ctx)
}

// reload applies SIGHUP: the log level changes at once; every other setting is bound at start, and the log names
// the sections that changed and need a restart. A config that does not load changes nothing. It returns the
// config now in force.
func reload(log *zap.Logger, level zap.AtomicLevel, path string, running *controller.Config) *controller.Config {
	cfg, err := controller.Load(path)
	if err != nil {
		log.Error("SIGHUP: config not reloaded; keeping the running one", zap.Error(err))
		return running
	}
	lvl, err := zapcore.ParseLevel(cfg.Log.Level)
	if err != nil {
		log.Error("SIGHUP: config not reloaded; keeping the running one", zap.Error(err))
		return running
	}
	// Logged before the change, so the line is written even when the new level hides info.
	log.Info("SIGHUP: log level reloaded", zap.String("config", path), zap.Stringer("log_level", lvl))
	level.SetLevel(lvl)
	next := *running
	next.Log = cfg.Log
	var restart []string
	a, b := reflect.ValueOf(next), reflect.ValueOf(*cfg)
	for i := range a.NumField() {
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			name, _, _ := strings.Cut(a.Type().Field(i).Tag.Get("yaml"), ",")
			restart = append(restart, name)
		}
	}
	if len(restart) > 0 {
		log.Warn("SIGHUP: only log.level is reloaded; these sections changed and need a restart", zap.Strings("sections", restart))
	}
	return &next
}
