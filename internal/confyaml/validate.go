package confyaml

import (
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The checks below are the ones the binaries' configs share. Each adds at most one problem, in the same words
// for every config, and returns what it parsed when the caller needs it.

// Required adds "required" when val is empty.
func (p *Problems) Required(field, val string) {
	if val == "" {
		p.Add(field, "required")
	}
}

// Positive adds a problem when n is not above zero.
func (p *Problems) Positive(field string, n int64) {
	if n <= 0 {
		p.Add(field, "must be positive")
	}
}

// HostPort checks a host:port to listen on or dial; an empty one is a problem only when required.
func (p *Problems) HostPort(field, addr string, required bool) {
	if addr == "" {
		if required {
			p.Add(field, "required (host:port)")
		}
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.Add(field, "%q is not host:port: %v", addr, err)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.Add(field, "%q has an invalid port", addr)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, "/ ") {
		p.Add(field, "%q has an invalid host", addr)
	}
}

// URL checks a required http:// or https:// URL and returns it, or nil after adding a problem.
func (p *Problems) URL(field, raw string) *url.URL {
	if raw == "" {
		p.Add(field, "required (http:// or https:// URL)")
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.Add(field, "%q is not an http:// or https:// URL", raw)
		return nil
	}
	return u
}

// SPIFFEID checks an optional SPIFFE ID.
func (p *Problems) SPIFFEID(field, val string) {
	if val == "" {
		return
	}
	if _, err := spiffeid.FromString(val); err != nil {
		p.Add(field, "%q is not a SPIFFE ID: %v", val, err)
	}
}

// TrustDomain checks a trust domain name and returns it; ok is false after adding a problem.
func (p *Problems) TrustDomain(field, val string) (td spiffeid.TrustDomain, ok bool) {
	td, err := spiffeid.TrustDomainFromString(val)
	if err != nil {
		p.Add(field, "%q: %v", val, err)
		return td, false
	}
	return td, true
}

// WorkloadID checks the SPIFFE ID of a workload (not of a trust domain) and, unless td is zero, that it is in
// td. It returns the ID; ok is false after adding a problem.
func (p *Problems) WorkloadID(field, val string, td spiffeid.TrustDomain) (id spiffeid.ID, ok bool) {
	id, err := spiffeid.FromString(val)
	switch {
	case err != nil:
		p.Add(field, "%q: %v", val, err)
	case id.Path() == "":
		p.Add(field, "%q names a trust domain, not a workload", val)
	case !td.IsZero() && id.TrustDomain() != td:
		p.Add(field, "%q is not in trust domain %q", val, td)
	default:
		return id, true
	}
	return id, false
}

// AbsPath adds a problem when a path that is set is not absolute.
func (p *Problems) AbsPath(field, path string) {
	if path != "" && !filepath.IsAbs(path) {
		p.Add(field, "%q is not an absolute path", path)
	}
}

// LogLevel checks log.level.
func (p *Problems) LogLevel(field, level string) {
	switch level {
	case "debug", "info", "warn", "error":
	default:
		p.Add(field, "%q is not one of debug, info, warn, error", level)
	}
}

// Secret checks a secret given inline (field) or in a file (field+"File"), and returns the file's contents: it
// reads the file now, so that a missing or empty one is a config problem with its line, not a failure at start.
func (p *Problems) Secret(field, inline, file string) string {
	switch {
	case file == "":
		return ""
	case inline != "":
		key := field[strings.LastIndexByte(field, '.')+1:]
		p.Add(field+"File", "set %s or %sFile, not both", key, key)
		return ""
	}
	s, err := ReadSecret(file)
	if err != nil {
		p.Add(field+"File", "%v", err)
	}
	return s
}
