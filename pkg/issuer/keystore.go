package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
)

// KeyStore holds the issuer's long-lived signing keys by name.
type KeyStore interface {
	// Signer returns the key called name, creating an ECDSA P-256 key under that name if none exists yet.
	Signer(name string) (crypto.Signer, error)
}

// keyNameRE keeps key names usable as file names with no path tricks.
var keyNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func checkKeyName(name string) error {
	if !keyNameRE.MatchString(name) {
		return fmt.Errorf("issuer: key name %q must match %s", name, keyNameRE)
	}
	return nil
}

// FileKeyStore keeps each key as a PKCS#8 PEM file, mode 0600, in a directory only its owner can enter.
type FileKeyStore struct {
	dir string

	mu   sync.Mutex
	keys map[string]crypto.Signer
}

// NewFileKeyStore opens (creating it with mode 0700 if missing) the key directory dir. It refuses a directory
// that group or others may write to, since they could replace a key.
func NewFileKeyStore(dir string) (*FileKeyStore, error) {
	if err := prepareKeyDir(dir); err != nil {
		return nil, err
	}
	return &FileKeyStore{dir: dir, keys: map[string]crypto.Signer{}}, nil
}

func prepareKeyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("issuer: creating key directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("issuer: key directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("issuer: key directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("issuer: key directory %s has mode %v: group or others may write to it; chmod 700 it",
			dir, fi.Mode().Perm())
	}
	return nil
}

// Path returns the file that holds (or will hold) the key called name.
func (s *FileKeyStore) Path(name string) string { return filepath.Join(s.dir, name+".key") }

// Signer returns the key called name, creating it if the file does not exist. It refuses a key file that is
// not a regular file, is owned by another user, or that group or others may access.
func (s *FileKeyStore) Signer(name string) (crypto.Signer, error) {
	if err := checkKeyName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[name]; ok {
		return k, nil
	}
	k, err := s.load(name)
	if errors.Is(err, fs.ErrNotExist) {
		k, err = s.create(name)
	}
	if err != nil {
		return nil, err
	}
	s.keys[name] = k
	return k, nil
}

func (s *FileKeyStore) load(name string) (crypto.Signer, error) {
	path := s.Path(name)
	data, err := readPrivateFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("issuer: key file %s holds no PKCS#8 \"PRIVATE KEY\" PEM block", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("issuer: key file %s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("issuer: key file %s holds a %T, which cannot sign", path, key)
	}
	return signer, nil
}

func (s *FileKeyStore) create(name string) (crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issuer: generating key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("issuer: encoding key: %w", err)
	}
	err = writeNewPrivateFile(s.dir, s.Path(name), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if errors.Is(err, fs.ErrExist) {
		return s.load(name) // another process created it first: use theirs
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}

// readPrivateFile reads a key file after checking that it is a regular file, owned by this process's user, that
// group and others cannot access. A missing file gives an error wrapping fs.ErrNotExist.
func readPrivateFile(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("issuer: key file %s is not a regular file (%v)", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("issuer: key file %s has mode %v: group or others may access it; chmod 600 it or remove it",
			path, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("issuer: key file %s is owned by uid %d, not by this process (uid %d)", path, st.Uid, os.Geteuid())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("issuer: reading key file: %w", err)
	}
	return data, nil
}

// writeNewPrivateFile writes data to path with mode 0600 through a temporary file and a hard link, so a crash
// never leaves a partial key and a concurrent creator is never overwritten: if path exists the error wraps
// fs.ErrExist.
func writeNewPrivateFile(dir, path string, data []byte) error {
	tmp, err := os.CreateTemp(dir, ".tmp-*") // mode 0600
	if err != nil {
		return fmt.Errorf("issuer: creating key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("issuer: writing key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		return fmt.Errorf("issuer: installing key file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the new directory entry durable; some filesystems refuse, which is not fatal
		d.Close()
	}
	return nil
}

var _ KeyStore = (*FileKeyStore)(nil)
