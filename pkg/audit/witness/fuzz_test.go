package witness_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/audit"
	"github.com/agentauth/agentauth/pkg/audit/witness"
)

// mapStore is a witness.Store in memory, so that each fuzz input starts from the same witnessed checkpoint.
type mapStore struct {
	mu sync.Mutex
	m  map[string]*agentauthv1.WitnessedCheckpoint
}

func (s *mapStore) SwapWitnessed(id string, next func(*agentauthv1.WitnessedCheckpoint) (*agentauthv1.WitnessedCheckpoint, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := next(s.m[id])
	if err != nil || v == nil {
		return err
	}
	s.m[id] = v
	return nil
}

// FuzzAddCheckpoint gives the witness hostile requests (checkpoint, key certificate, old size, proof) from a
// sidecar whose checkpoint of 4 records it holds: no input may crash it, and whatever it accepts it can read back.
func FuzzAddCheckpoint(f *testing.F) {
	ca := testca.New(f, td)
	svid := ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/agent/planner"))
	l := &sidecarLog{t: f, dir: f.TempDir(), svid: svid}
	_, v, err := audit.LoadOrCreateKey(filepath.Join(l.dir, "audit.key"), audit.OriginFor(svid.ID))
	if err != nil {
		f.Fatal(err)
	}
	cert, err := audit.CertifyKey(audit.VerifierKey(v), svid, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.dir, audit.KeyCertFile), cert, 0o600); err != nil {
		f.Fatal(err)
	}
	l.add(4, "a")
	first, err := audit.LatestCheckpoint(l.dir)
	if err != nil {
		f.Fatal(err)
	}
	l.add(5, "b")
	second, err := audit.LatestCheckpoint(l.dir)
	if err != nil {
		f.Fatal(err)
	}
	proof, err := audit.ConsistencyProof(l.dir, 4, 9)
	if err != nil {
		f.Fatal(err)
	}
	var flat []byte
	for _, h := range proof {
		flat = append(flat, h...)
	}
	f.Add(second, cert, uint64(4), flat)
	f.Add(first, cert, uint64(0), []byte(nil))
	f.Add(second, cert, uint64(3), flat[:len(flat)-1])
	f.Add([]byte("example.org/agent/planner\n9\nAAAA\n\n— x\n"), []byte("a.b.c"), uint64(4), flat)

	f.Fuzz(func(t *testing.T, checkpoint, keyCert []byte, oldSize uint64, proofBytes []byte) {
		st := &mapStore{m: map[string]*agentauthv1.WitnessedCheckpoint{}}
		w, err := witness.New(witness.Config{Store: st, Bundle: ca.X509Bundle()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Add(context.Background(), svid.ID, &agentauthv1.AddCheckpointRequest{Checkpoint: first, KeyCertificate: cert}); err != nil {
			t.Fatal(err)
		}
		// Proof hashes of 32 bytes, and a shorter last one if the input leaves one.
		var hashes [][]byte
		for len(proofBytes) > 0 {
			n := min(32, len(proofBytes))
			hashes = append(hashes, proofBytes[:n])
			proofBytes = proofBytes[n:]
		}
		size, err := w.Add(context.Background(), svid.ID, &agentauthv1.AddCheckpointRequest{
			Checkpoint: checkpoint, KeyCertificate: keyCert, OldSize: oldSize, ConsistencyProof: hashes})
		if err != nil {
			return
		}
		if size < 4 {
			t.Fatalf("accepted, and now holds %d records, fewer than the 4 witnessed", size)
		}
	})
}
