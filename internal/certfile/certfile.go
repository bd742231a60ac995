package certfile

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
)

// maxPEMBytes caps each file: a certificate chain or a key is a few KB.
const maxPEMBytes = 1 << 20

// Reloader holds the current certificate. Handshakes read it without locking; Reload swaps it only for a valid
// pair, so a rotation that fails (a half-written file, a key that does not match) keeps the old one in use.
type Reloader struct {
	certFile, keyFile string
	cur               atomic.Pointer[loaded]
}

type loaded struct {
	cert            *tls.Certificate
	certPEM, keyPEM []byte
}

// New loads the pair now, so a missing or bad file fails configuration rather than the first handshake.
func New(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile}
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load().cert, nil
}

// Leaf is the certificate in use.
func (r *Reloader) Leaf() *x509.Certificate { return r.cur.Load().cert.Leaf }

// Reload reads both files and, when they changed and form a valid pair, makes them the certificate in use; it
// reports whether it did. On error the certificate in use stays.
func (r *Reloader) Reload() (changed bool, err error) {
	certPEM, err := readFile(r.certFile)
	if err != nil {
		return false, err
	}
	keyPEM, err := readFile(r.keyFile)
	if err != nil {
		return false, err
	}
	if old := r.cur.Load(); old != nil && bytes.Equal(old.certPEM, certPEM) && bytes.Equal(old.keyPEM, keyPEM) {
		return false, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("%s and %s: %w", r.certFile, r.keyFile, err)
	}
	r.cur.Store(&loaded{cert: &cert, certPEM: certPEM, keyPEM: keyPEM})
	return true, nil
}

// Watch calls Reload every interval until ctx ends, and onReload (which may be nil) after each reload that
// changed the certificate or failed.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration, onReload func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if changed, err := r.Reload(); (changed || err != nil) && onReload != nil {
			onReload(err)
		}
	}
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPEMBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxPEMBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxPEMBytes)
	}
	return data, nil
}
