// Command controller is the agentauth control plane: the built-in identity issuer (the embedded default when no
// SPIRE runs), the xDS server that pushes policy and revocations to every sidecar, and the admin socket that
// agentauthctl talks to.
//
//	controller -config /etc/agentauth/controller.yaml
//	controller -config controller.yaml -check    # validate the config and the files it names, and exit
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

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
	check := flag.Bool("check", false, "validate the config and the files it names, and exit")
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
		if err := controller.CheckFiles(cfg); err != nil {
			return err
		}
		fmt.Println("config OK")
		return nil
	}
	log, err := logging.New(cfg.Log.Level)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := controller.New(ctx, cfg, log)
	if err != nil {
		log.Error("controller failed to start", zap.Error(err))
		return err
	}
	return c.Run(ctx)
}
