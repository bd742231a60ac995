// Package certfile serves a TLS certificate and key from PEM files and reloads them when the files change: a
// renewed certificate (certbot, cert-manager, an operator's copy) is picked up without a restart, and a bad one is
// reported and never replaces the certificate in use.
package certfile
