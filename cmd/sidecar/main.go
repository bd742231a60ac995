// Command sidecar is the agentauth data plane. Beside an agent it adds proof of identity to the agent's plain HTTP
// calls (egress); beside a tool it verifies callers and hands the tool verified identity headers (ingress).
//
//	sidecar -config /etc/agentauth/sidecar.yaml
//	sidecar -config sidecar.yaml -check    # validate the config and every file it names, and exit
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/agentauth/agentauth/internal/buildinfo"
	"github.com/agentauth/agentauth/internal/logging"
	"github.com/agentauth/agentauth/pkg/sidecar"
)

func main() {
	if err := run(); err != nil {
		if !errors.As(err, new(loggedError)) {
			fmt.Fprintln(os.Stderr, "sidecar:", err)
		}
		os.Exit(1)
	}
}

// loggedError is an error the logger has already written: main exits without printing it again.
type loggedError struct{ error }

func run() error {
	configPath := flag.String("config", "/etc/agentauth/sidecar.yaml", "path of the YAML config")
	check := flag.Bool("check", false, "validate the config and every file it names, and exit")
	version := flag.Bool("version", false, "print the version (from the build info) and exit")
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.Read().Line("sidecar"))
		return nil
	}

	cfg, err := sidecar.Load(*configPath)
	if err != nil {
		return err
	}
	if *check {
		if err := sidecar.CheckCredentials(cfg); err != nil {
			return err
		}
		fmt.Println("config OK")
		return nil
	}
	log, level, err := logging.New(cfg.Log.Level)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	s, err := sidecar.New(ctx, cfg, log, sidecar.WithLogLevel(level))
	if err != nil {
		log.Error("sidecar failed to start", zap.Error(err))
		return loggedError{err}
	}
	if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("sidecar stopped with an error", zap.Error(err))
		return loggedError{err}
	}
	log.Info("sidecar stopped")
	return nil
}
