package testca

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// File names used by the Write* helpers. Writing again into the same dir replaces the files atomically
// (write to a temporary file, then rename), which is how a rotation looks to a file watcher.
const (
	SVIDCertFile   = "svid.pem"
	SVIDKeyFile    = "svid_key.pem"
	BundleFile     = "bundle.pem"
	JWTBundleFile  = "bundle.json"
	WITTokenFile   = "wit.jwt"
	WITKeyFile     = "wit_key.pem"
	filePermSecret = 0o600
	filePermPublic = 0o644
)

// WriteSVIDFiles writes svid's certificate chain (leaf first) and PKCS#8 private key as PEM into dir.
// svid may come from another CA.
func (ca *CA) WriteSVIDFiles(dir string, svid *x509svid.SVID) (certPath, keyPath string) {
	ca.tb.Helper()
	var certPEM []byte
	for _, c := range svid.Certificates {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		ca.tb.Fatalf("testca: marshal key: %v", err)
	}
	certPath = filepath.Join(dir, SVIDCertFile)
	keyPath = filepath.Join(dir, SVIDKeyFile)
	// Key first: a watcher that sees the new certificate must never pair it with the old key for long.
	ca.writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), filePermSecret)
	ca.writeFile(certPath, certPEM, filePermPublic)
	return certPath, keyPath
}

// WriteBundleFile writes the CA's X.509 authorities as PEM into dir and returns the path.
func (ca *CA) WriteBundleFile(dir string) string {
	ca.tb.Helper()
	var out []byte
	for _, c := range ca.X509Authorities() {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	path := filepath.Join(dir, BundleFile)
	ca.writeFile(path, out, filePermPublic)
	return path
}

// WriteJWTBundleFile writes the CA's full SPIFFE bundle (JWK Set with x509-svid, jwt-svid and wit-svid keys) as
// JSON into dir and returns the path.
func (ca *CA) WriteJWTBundleFile(dir string) string {
	ca.tb.Helper()
	doc, err := ca.Bundle().Marshal()
	if err != nil {
		ca.tb.Fatalf("testca: marshal bundle: %v", err)
	}
	path := filepath.Join(dir, JWTBundleFile)
	ca.writeFile(path, doc, filePermPublic)
	return path
}

// WriteWITFiles writes the WIT-SVID compact token and its PKCS#8 private key (PEM) into dir.
func (ca *CA) WriteWITFiles(dir string, wit *WITSVID) (tokenPath, keyPath string) {
	ca.tb.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(wit.Key)
	if err != nil {
		ca.tb.Fatalf("testca: marshal WIT key: %v", err)
	}
	tokenPath = filepath.Join(dir, WITTokenFile)
	keyPath = filepath.Join(dir, WITKeyFile)
	ca.writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), filePermSecret)
	ca.writeFile(tokenPath, []byte(wit.Token+"\n"), filePermSecret)
	return tokenPath, keyPath
}

// writeFile replaces path atomically so a concurrent reader sees either the old or the new content.
func (ca *CA) writeFile(path string, data []byte, perm os.FileMode) {
	ca.tb.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".testca-*")
	if err != nil {
		ca.tb.Fatalf("testca: %v", err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		ca.tb.Fatalf("testca: write %s: %v %v", path, werr, cerr)
	}
	if err := os.Chmod(tmp.Name(), perm); err != nil {
		ca.tb.Fatalf("testca: %v", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		ca.tb.Fatalf("testca: %v", err)
	}
}
