package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

// fixture writes a store with enough records that its big buckets span several pages under a branch page, and
// returns its path, its page size and the root page of the issued-certificates bucket.
func fixture(t *testing.T) (path string, pageSize int, certsRoot uint64) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var certs []*agentauthv1.IssuedCert
	var revs []*agentauthv1.Revocation
	for i := range 300 {
		certs = append(certs, &agentauthv1.IssuedCert{Serial: fmt.Sprintf("%040x", i), SpiffeId: "spiffe://example.org/agent/a",
			NotAfter: timestamppb.New(time.Unix(1_760_000_000, 0))})
		revs = append(revs, revocation(fmt.Sprintf("r%d", i), fmt.Sprintf("spiffe://example.org/agent/%d", i)))
	}
	if _, err := s.IssuedCerts().Replace(certs); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revocations().Replace(revs); err != nil {
		t.Fatal(err)
	}
	pageSize = s.db.Info().PageSize
	if err := s.db.View(func(tx *bolt.Tx) error {
		certsRoot = uint64(tx.Bucket([]byte(BucketIssuedCerts)).RootPage())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path, pageSize, certsRoot
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// Before, bbolt's assertions on these files panicked (or faulted, or looped until out of memory) inside Open or
// the first transaction that touched the damage; now each is ErrCorrupt from Open.
func TestCorruptStoreFileIsErrCorruptNotAPanic(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(t *testing.T, path string, ps int, root uint64)
	}{
		{"truncated to two pages", func(t *testing.T, path string, ps int, _ uint64) { _ = os.Truncate(path, int64(2*ps)) }},
		{"truncated to half", func(t *testing.T, path string, ps int, _ uint64) {
			fi, _ := os.Stat(path)
			_ = os.Truncate(path, fi.Size()/2/int64(ps)*int64(ps))
		}},
		{"truncated below two pages", func(t *testing.T, path string, ps int, _ uint64) { _ = os.Truncate(path, int64(ps)) }},
		{"both meta pages flipped", func(t *testing.T, path string, ps int, _ uint64) {
			writeAt(t, path, 16+8, []byte{0xff, 0xff}) // page size field of meta 0
			writeAt(t, path, int64(ps)+16+56, []byte{0xde, 0xad})
		}},
		{"page of the wrong type", func(t *testing.T, path string, ps int, root uint64) {
			writeAt(t, path, int64(root)*int64(ps)+8, []byte{0x77, 0})
		}},
		{"page zeroed", func(t *testing.T, path string, ps int, root uint64) {
			writeAt(t, path, int64(root)*int64(ps), make([]byte, ps))
		}},
		{"branch page pointing at itself", func(t *testing.T, path string, ps int, root uint64) {
			var b [8]byte
			binary.NativeEndian.PutUint64(b[:], root)
			writeAt(t, path, int64(root)*int64(ps)+16+8, b[:]) // first element's child
		}},
		{"child beyond the file", func(t *testing.T, path string, ps int, root uint64) {
			var b [8]byte
			binary.NativeEndian.PutUint64(b[:], 1<<40)
			writeAt(t, path, int64(root)*int64(ps)+16+8, b[:])
		}},
		{"element beyond its page", func(t *testing.T, path string, ps int, root uint64) {
			writeAt(t, path, int64(root)*int64(ps)+10, []byte{0xff, 0x0f}) // element count
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, ps, root := fixture(t)
			var b [2]byte
			f, _ := os.Open(path)
			_, _ = f.ReadAt(b[:], int64(root)*int64(ps)+8)
			f.Close()
			if binary.NativeEndian.Uint16(b[:]) != branchPage {
				t.Fatalf("fixture: page %d is not a branch page", root)
			}
			tt.corrupt(t, path, ps, root)
			s, err := Open(path, Options{})
			if err == nil {
				_ = s.Close()
				t.Fatal("opened a corrupt store")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
			t.Log(err)
			if err := Verify(path); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Verify: %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestOneDamagedMetaPageIsTolerated(t *testing.T) {
	path, ps, _ := fixture(t)
	writeAt(t, path, int64(ps)+16+56, []byte{0xde, 0xad}) // meta 1's checksum: bbolt reads meta 0
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rs, err := s.Revocations().List(); err != nil || len(rs) != 300 {
		t.Fatalf("revocations: %d, %v", len(rs), err)
	}
}

// Before, a damaged value in a bucket only housekeeping reads surfaced hours after start; now Open finds it.
func TestCorruptValueIsFoundAtOpen(t *testing.T) {
	path, _, _ := fixture(t)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(BucketJoinTokens)).Put([]byte("h1"), []byte{0x0a, 0xff})
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if _, err := Open(path, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
}

// Damage that appears under an open store (the disk, another writer) is ErrCorrupt from the transaction that
// meets it, not a panic (before: a panic in housekeeping's DeleteFunc after the controller was serving), and the
// store then stays broken.
func TestCorruptionWhileOpenBreaksTheStore(t *testing.T) {
	path, ps, root := fixture(t)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writeAt(t, path, int64(root)*int64(ps), make([]byte, ps)) // the memory map sees it
	_, err = s.IssuedCerts().DeleteFunc(func(*agentauthv1.IssuedCert) bool { return true })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("DeleteFunc: %v, want ErrCorrupt", err)
	}
	select {
	case <-s.Broken():
	default:
		t.Fatal("store not marked broken")
	}
	if _, err := s.Policies().List(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("after breaking: %v, want ErrCorrupt", err)
	}
	if !errors.Is(s.Err(), ErrCorrupt) {
		t.Fatalf("Err = %v", s.Err())
	}
}

func TestMustExist(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing.db"), empty} {
		if _, err := Open(path, Options{MustExist: true}); !errors.Is(err, ErrAbsent) {
			t.Fatalf("%s: %v, want ErrAbsent", path, err)
		}
		if err := Verify(path); !errors.Is(err, ErrAbsent) {
			t.Fatalf("Verify %s: %v, want ErrAbsent", path, err)
		}
	}
	if fi, err := os.Stat(empty); err != nil || fi.Size() != 0 {
		t.Fatalf("the empty file was changed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the missing file was created")
	}
}

func TestBackupRestores(t *testing.T) {
	path, _, _ := fixture(t)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want, _ := s.Version()
	backup := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	n, err := s.Backup(f, func(n int64) { size = n })
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || n != size {
		t.Fatalf("Backup: %d bytes of %d, %v", n, size, err)
	}
	if _, err := s.Revocations().Put(revocation("after", "spiffe://example.org/agent/after")); err != nil {
		t.Fatal(err) // writers carry on; the backup keeps the state it started with
	}
	if err := Verify(backup); err != nil {
		t.Fatal(err)
	}
	r, err := Open(backup, Options{MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if v, _ := r.Version(); v != want {
		t.Fatalf("restored version %d, want %d", v, want)
	}
	if rs, err := r.Revocations().List(); err != nil || len(rs) != 300 {
		t.Fatalf("restored revocations: %d, %v", len(rs), err)
	}
}
