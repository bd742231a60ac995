// Command controller is the agentauth control plane: the built-in identity issuer (the embedded default when no
// SPIRE runs), the xDS server that pushes policy and revocations to every sidecar, and the admin socket that
// agentauthctl talks to.
//
//	controller -config /etc/agentauth/controller.yaml
//	controller -config controller.yaml -check    # validate the config and the files it names, and exit
//
// Exit codes: 0 after a clean stop; 1 for any other error (configuration, listeners, keys); 3 when the state
// store (dataDir/state.db) is damaged, at start or while running; 4 when state.db is missing or empty beside
// existing CA keys (restore a backup, or start once with -init-state).
package main

import (
	"context"
	"errors"
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

// Exit codes a supervisor or script can branch on.
const (
	exitError        = 1
	exitStateCorrupt = 3
	exitStateMissing = 4
)

func main() {
	if err := run(); err != nil {
		if !errors.As(err, new(loggedError)) {
			fmt.Fprintln(os.Stderr, "controller:", err)
		}
		os.Exit(exitCode(err))
	}
}

// loggedError is an error the logger has already written: main exits without printing it again.
type loggedError struct{ error }

func (e loggedError) Unwrap() error { return e.error }

func exitCode(err error) int {
	switch {
	case errors.Is(err, controller.ErrStateCorrupt):
		return exitStateCorrupt
	case errors.Is(err, controller.ErrStateMissing):
		return exitStateMissing
	}
	return exitError
}

func run() error {
	path := flag.String("config", "/etc/agentauth/controller.yaml", "path of the YAML config")
	check := flag.Bool("check", false, "validate the config and the files it names, and exit")
	version := flag.Bool("version", false, "print the version (from the build info) and exit")
	initState := flag.Bool("init-state", false, "start with empty state although dataDir/keys exists and state.db is "+
		"missing or empty (every revocation, policy and join token is lost): only when no backup can be restored")
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.Read().Line("controller"))
		return nil
	}
	cfg, err := controller.Load(*path)
	if err != nil {
		return err
	}
	cfg.InitState = *initState
	if *check {
		if err := controller.CheckFiles(cfg); err != nil {
			return err
		}
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
	c, err := controller.New(ctx, cfg, log, controller.WithLogLevel(level))
	if err != nil {
		log.Error("controller failed to start", zap.Error(err))
		return loggedError{err}
	}
	if err := c.Run(ctx); err != nil {
		log.Error("controller stopped with an error", zap.Error(err))
		return loggedError{err}
	}
	return nil
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
