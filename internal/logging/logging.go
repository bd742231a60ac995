// Package logging builds the zap JSON logger every agentauth binary uses, and the /logging endpoint that changes
// its level while the binary runs.
package logging

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a JSON logger at level (debug, info, warn, error) writing to stderr, and its level, which the
// binary's main owns and may change while it runs (LevelHandler, SIGHUP).
func New(level string) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, zap.AtomicLevel{}, fmt.Errorf("log level: %w", err)
	}
	atomic := zap.NewAtomicLevelAt(lvl)
	log, err := NewAtLevel(atomic)
	return log, atomic, err
}

// NewAtLevel returns the same logger at an atomic level its owner can change while it runs.
//
// Error lines carry no stack trace: an error is an event to act on, described by its message and fields, and a
// trace of the logging call site says nothing about its cause.
func NewAtLevel(lvl zap.AtomicLevel) (*zap.Logger, error) {
	return config(lvl).Build()
}

func config(lvl zap.AtomicLevel) zap.Config {
	cfg := zap.NewProductionConfig()
	cfg.Level = lvl
	cfg.EncoderConfig.TimeKey = "ts"
	cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	cfg.Sampling = nil
	cfg.DisableStacktrace = true
	return cfg
}

// LevelHandler serves /logging on an admin listener: GET answers {"level":"info"}; PUT or POST with
// ?level=debug (or a form body level=debug) sets the level and answers the new one.
//
// The admin listeners are unauthenticated, and may be reachable from other hosts (probes and scrapes come from
// there). Reading the level is harmless, but debug logs every allowed request, which an outsider could use to
// fill the disk, so a change is accepted only from a loopback peer: an operator on the host (or in the pod, with
// kubectl exec or port-forward) can change it, a client elsewhere gets 403. Anything on the host's loopback
// can, as it can with Envoy's /logging on its loopback admin port. Every change is logged with its peer.
func LevelHandler(lvl zap.AtomicLevel, log *zap.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodPut, http.MethodPost:
			if !loopbackPeer(r.RemoteAddr) {
				writeLevel(w, http.StatusForbidden, map[string]string{
					"error": "the log level can be changed only from a loopback address"})
				return
			}
			text := r.FormValue("level")
			var next zapcore.Level
			if err := next.UnmarshalText([]byte(text)); err != nil || text == "" {
				writeLevel(w, http.StatusBadRequest, map[string]string{
					"error": fmt.Sprintf("level %q: want debug, info, warn or error", text)})
				return
			}
			if prev := lvl.Level(); prev != next {
				lvl.SetLevel(next)
				log.Info("log level changed", zap.Stringer("from", prev), zap.Stringer("to", next),
					zap.String("peer", r.RemoteAddr))
			}
		default:
			w.Header().Set("Allow", "GET, HEAD, PUT, POST")
			writeLevel(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET, or PUT or POST with ?level="})
			return
		}
		writeLevel(w, http.StatusOK, map[string]string{"level": lvl.Level().String()})
	})
}

func writeLevel(w http.ResponseWriter, status int, body map[string]string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// loopbackPeer reports a TCP peer on a loopback address (127.0.0.0/8, ::1, or IPv4-mapped).
func loopbackPeer(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
