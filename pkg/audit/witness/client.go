package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/audit"
)

// Client sends the checkpoints of the log in a directory to the controller's witness. It is not safe for
// concurrent use: one goroutine runs it.
type Client struct {
	dir    string
	prover *audit.Prover
	rpc    agentauthv1.AuditWitnessServiceClient
	log    *zap.Logger
	// witnessed is the size the witness holds, as far as we know (0 until it answers once).
	witnessed uint64
	// sent is the last checkpoint the witness accepted, and cert the key certificate sent with it.
	sent, cert []byte
	failing    bool
}

// NewClient returns a Client for the log in dir, calling the witness on cc (an mTLS connection made with the
// SVID that certified the log's checkpoint key).
func NewClient(dir string, cc grpc.ClientConnInterface, log *zap.Logger) *Client {
	if log == nil {
		log = zap.NewNop()
	}
	return &Client{dir: dir, prover: audit.NewProver(dir), rpc: agentauthv1.NewAuditWitnessServiceClient(cc), log: log}
}

// Witnessed is the size the witness last said it holds.
func (c *Client) Witnessed() uint64 { return c.witnessed }

// Send sends the log's latest checkpoint, with a consistency proof from the witnessed size (learnt from the witness
// if it holds another). It returns the size the witness holds. A checkpoint the witness already accepted is sent
// again, without a proof: the witness learns that the sidecar still reports, even when its log does not grow.
func (c *Client) Send(ctx context.Context) (uint64, error) {
	note, err := audit.LatestCheckpoint(c.dir)
	if err != nil || note == nil {
		return c.witnessed, err
	}
	cp, err := peek(note)
	if err != nil {
		return c.witnessed, err
	}
	if bytes.Equal(note, c.sent) {
		req := &agentauthv1.AddCheckpointRequest{Checkpoint: note, KeyCertificate: c.cert, OldSize: c.witnessed}
		if _, err := c.rpc.AddCheckpoint(ctx, req); err != nil {
			// The witness may hold another size now (another controller's store): prove from it.
			c.sent = nil
			return c.witnessed, fmt.Errorf("witness: checkpoint of %d records, again: %w", cp.Size, err)
		}
		return c.witnessed, nil
	}
	cert, err := os.ReadFile(filepath.Join(c.dir, audit.KeyCertFile))
	if err != nil {
		return c.witnessed, fmt.Errorf("witness: %w", err)
	}
	// Twice at most: the first answer may say the witness holds another size than we thought.
	for range 2 {
		req := &agentauthv1.AddCheckpointRequest{Checkpoint: note, KeyCertificate: bytes.TrimSpace(cert), OldSize: c.witnessed}
		if c.witnessed > 0 && c.witnessed < cp.Size {
			// A log that cannot prove from the witnessed size (it shrank) sends no proof: the witness decides.
			if req.ConsistencyProof, err = c.prover.Consistency(c.witnessed, cp.Size); err != nil {
				c.log.Warn("witness: no consistency proof from the witnessed size", zap.Uint64("witnessed", c.witnessed), zap.Error(err))
			}
		}
		resp, err := c.rpc.AddCheckpoint(ctx, req)
		if err == nil {
			c.witnessed, c.sent, c.cert = resp.GetWitnessedSize(), note, req.KeyCertificate
			return c.witnessed, nil
		}
		size, ok := witnessedSize(err)
		if !ok {
			return c.witnessed, fmt.Errorf("witness: checkpoint of %d records: %w", cp.Size, err)
		}
		c.witnessed = size
	}
	return c.witnessed, errors.New("witness: the witnessed size keeps changing")
}

// Run sends checkpoints every interval until ctx ends. Failures are logged when they start and end.
func (c *Client) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		call, cancel := context.WithTimeout(ctx, interval)
		size, err := c.Send(call)
		cancel()
		switch {
		case err != nil && !c.failing && ctx.Err() == nil:
			c.failing = true
			c.log.Warn("witness: the controller did not witness the audit log's checkpoint; retrying", zap.Error(err))
		case err == nil && c.failing:
			c.failing = false
			c.log.Info("witness: the controller witnesses the audit log again", zap.Uint64("witnessed", size))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// peek parses a signed checkpoint without verifying it: the witness verifies.
func peek(note []byte) (audit.Checkpoint, error) {
	text, _, ok := bytes.Cut(note, []byte("\n\n"))
	if !ok {
		return audit.Checkpoint{}, fmt.Errorf("%w: checkpoint without signatures", audit.ErrMalformed)
	}
	return audit.ParseCheckpoint(string(text) + "\n")
}

// witnessedSize reads the witnessed size from an ABORTED answer.
func witnessedSize(err error) (uint64, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Aborted {
		return 0, false
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			if n, err := strconv.ParseUint(ei.GetMetadata()[MetadataWitnessedSize], 10, 64); err == nil {
				return n, true
			}
		}
	}
	return 0, false
}
