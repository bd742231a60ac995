package controller

import (
	"errors"
	"fmt"

	"github.com/agentauth/agentauth/internal/certfile"
	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/signals"
)

// CheckFiles opens and parses every file the config names, as the controller does when it starts: user issuers'
// and transmitters' JWKS files and the SSF receiver's certificate (secret files are read by Load already).
// `controller -check` thus passes only what will start. Every problem is reported, each naming its field and file.
func CheckFiles(cfg *Config) error {
	var errs []error
	if ts := cfg.TokenService; ts != nil {
		for i, u := range ts.UserIssuers {
			if _, err := oauth.NewJWKSFile(u.JWKSFile); err != nil {
				errs = append(errs, fmt.Errorf("tokenService.userIssuers[%d].jwksFile: %w", i, err))
			}
		}
	}
	if s := cfg.SSF; s != nil {
		for i, t := range s.Transmitters {
			if t.JWKSFile == "" {
				continue
			}
			if err := signals.CheckJWKSFile(t.JWKSFile); err != nil {
				errs = append(errs, fmt.Errorf("ssf.transmitters[%d].jwksFile: %w", i, err))
			}
		}
		if s.TLS != nil {
			if _, err := certfile.New(s.TLS.Cert, s.TLS.Key); err != nil {
				errs = append(errs, fmt.Errorf("ssf.tls: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}
