// Package logging builds the zap JSON logger every agentauth binary uses.
package logging

import (
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a JSON logger at level (debug, info, warn, error) writing to stderr.
func New(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	return NewAtLevel(zap.NewAtomicLevelAt(lvl))
}

// NewAtLevel returns the same logger at an atomic level its owner can change while it runs (SIGHUP).
func NewAtLevel(lvl zap.AtomicLevel) (*zap.Logger, error) {
	cfg := zap.NewProductionConfig()
	cfg.Level = lvl
	cfg.EncoderConfig.TimeKey = "ts"
	cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	cfg.Sampling = nil
	return cfg.Build()
}
