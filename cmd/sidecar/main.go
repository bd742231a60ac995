// Command sidecar is the agentauth data plane. Beside an agent it adds proof of identity to the agent's plain HTTP
// calls (egress); beside a tool it verifies callers and hands the tool verified identity headers (ingress).
//
//	sidecar -config /etc/agentauth/sidecar.yaml
//	sidecar -config sidecar.yaml -check    # validate the config and every file it names, and exit
//	sidecar -config-env AGENTAUTH_SIDECAR_CONFIG   # the config's YAML from an environment variable (Kubernetes)
//	sidecar redirect install -sidecar-uid 65532 [flags]   # the redirect rules of an injected pod (nftables)
//	sidecar redirect remove
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/agentauth/agentauth/internal/buildinfo"
	"github.com/agentauth/agentauth/internal/logging"
	"github.com/agentauth/agentauth/internal/memtrim"
	"github.com/agentauth/agentauth/pkg/inject/redirect"
	"github.com/agentauth/agentauth/pkg/sidecar"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "redirect" {
		if err := runRedirect(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "sidecar redirect:", err)
			os.Exit(1)
		}
		return
	}
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
	configEnv := flag.String("config-env", "", "name of an environment variable holding the YAML config, instead of -config")
	check := flag.Bool("check", false, "validate the config and every file it names, and exit")
	version := flag.Bool("version", false, "print the version (from the build info) and exit")
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.Read().Line("sidecar"))
		return nil
	}

	load := func() (*sidecar.Config, error) { return sidecar.Load(*configPath) }
	if *configEnv != "" {
		*configPath = "$" + *configEnv
		load = func() (*sidecar.Config, error) { return sidecar.Parse([]byte(os.Getenv(*configEnv))) }
	}
	cfg, err := load()
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
	gc := sidecar.ApplyRuntime(cfg.Runtime, os.Getenv)
	log.Info("garbage collector set", zap.Int("gc_percent", gc.GCPercent), zap.String("gc_percent_from", gc.GCPercentFrom),
		zap.Int64("memory_limit_bytes", gc.MemoryLimit), zap.String("memory_limit_from", gc.MemoryLimitFrom))

	// SIGHUP is caught from here on (its default action would end the process), also while the sidecar starts.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var running atomic.Pointer[sidecar.Sidecar]
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload(log, level, *configPath, load, running.Load())
			}
		}
	}()
	s, err := sidecar.New(ctx, cfg, log, sidecar.WithLogLevel(level))
	if errors.Is(err, context.Canceled) {
		log.Info("sidecar stopped while starting")
		return nil
	}
	if err != nil {
		log.Error("sidecar failed to start", zap.Error(err))
		return loggedError{err}
	}
	running.Store(s)
	// Start-up is over: give back what only it used, the binary's pages most of all (internal/memtrim).
	if st, err := memtrim.Release(); err != nil {
		log.Warn("start-up memory not released", zap.Error(err))
	} else {
		log.Debug("start-up memory released", zap.Int("binary_mappings", st.Mappings), zap.Int64("binary_bytes", st.Bytes))
	}
	// And again when requests are over and left more than 2 MiB resident: 10s with under 1 MiB allocated (metrics
	// scrapes, xDS and renewals stay well below it).
	go memtrim.ReleaseWhenIdle(ctx, 10*time.Second, 1<<20, 2<<20, func(st memtrim.Stats, err error) {
		if err != nil {
			log.Warn("idle memory not released", zap.Error(err))
			return
		}
		log.Debug("idle memory released", zap.Int("binary_mappings", st.Mappings), zap.Int64("binary_bytes", st.Bytes))
	})
	if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("sidecar stopped with an error", zap.Error(err))
		return loggedError{err}
	}
	log.Info("sidecar stopped")
	return nil
}

// reload applies SIGHUP: re-read the config and apply what can change while running (sidecar.Reload), and the
// log level. On any error nothing changes and the log says why; the process never stops for a bad config.
func reload(log *zap.Logger, level zap.AtomicLevel, path string, load func() (*sidecar.Config, error), s *sidecar.Sidecar) {
	if s == nil {
		log.Warn("SIGHUP ignored: the sidecar is still starting")
		return
	}
	cfg, err := load()
	if err != nil {
		log.Error("SIGHUP: config not reloaded; keeping the running one", zap.Error(err))
		return
	}
	lvl, err := zapcore.ParseLevel(cfg.Log.Level)
	if err != nil {
		log.Error("SIGHUP: config not reloaded; keeping the running one", zap.Error(err))
		return
	}
	restart, err := s.Reload(cfg)
	if err != nil {
		log.Error("SIGHUP: config not reloaded; keeping the running one", zap.Error(err))
		return
	}
	// Logged before the change, so the line is written even when the new level hides info.
	log.Info("SIGHUP: config reloaded", zap.String("config", path), zap.Stringer("log_level", lvl))
	level.SetLevel(lvl)
	if len(restart) > 0 {
		log.Warn("SIGHUP: these sections changed but take effect only at the next restart", zap.Strings("sections", restart))
	}
}

// runRedirect installs or removes the redirect rules of an injected pod: the injector runs it as the pod's first
// init container, with the flags redirect.Rules.Args renders.
func runRedirect(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: sidecar redirect install -sidecar-uid UID [flags] | sidecar redirect remove")
	}
	switch args[0] {
	case "install":
		r, err := redirect.ParseArgs(args[1:], os.Stderr)
		if err != nil {
			return err
		}
		if err := redirect.Install(r); err != nil {
			return err
		}
		fmt.Printf("redirect rules installed: %s\n", strings.Join(r.Args(), " "))
		return nil
	case "remove":
		if len(args) > 1 {
			return fmt.Errorf("remove takes no arguments, got %q", args[1])
		}
		if err := redirect.Remove(); err != nil {
			return err
		}
		fmt.Println("redirect rules removed")
		return nil
	default:
		return fmt.Errorf("unknown action %q (want install or remove)", args[0])
	}
}
