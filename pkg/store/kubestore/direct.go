package kubestore

import (
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/store"
)

// Collections of direct records: read from and written to the API server on each call, never cached by the
// informer nor announced to subscribers. They are read rarely (a stream id when an SSF stream is managed), or
// once per write (a sidecar's witnessed checkpoint), and there may be one per sidecar: caching them would cost
// every replica memory for nothing it serves.
const (
	bucketSSFStreams = "ssf_streams"
	bucketWitnessed  = store.BucketWitnessed
)

// conflictRetry is how often, and how patiently, a compare-and-swap that lost a race runs again: more than
// client-go's DefaultRetry (5 steps, 10ms apart), as several writers of one record each force the others to retry.
var conflictRetry = wait.Backoff{Steps: 12, Duration: 10 * time.Millisecond, Factor: 1.5, Jitter: 0.5, Cap: time.Second}

// directRecord is the Secret of a direct record: labelled LabelDirect, not LabelStore, so the informer leaves it
// out.
func (s *Store) directRecord(bucket, key string, raw []byte) *corev1.Secret {
	return s.secret(LabelDirect, bucket, key, raw)
}

// getDirect reads the direct record key of bucket from the API server: its value and resourceVersion, or
// ok=false when there is none.
func (s *Store) getDirect(bucket, key string) (raw []byte, rv string, ok bool, err error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	sec, err := s.secrets.Get(ctx, s.secretName(bucket, key), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, "", false, nil
	case err != nil:
		return nil, "", false, err
	case string(sec.Data[dataKey]) != key:
		return nil, "", false, fmt.Errorf("kubestore: %s %q: %w: the record names key %q", bucket, key, store.ErrCorrupt, sec.Data[dataKey])
	}
	return sec.Data[dataValue], sec.ResourceVersion, true, nil
}

// putDirect writes a direct record: created when rv is "", else updated on the condition that it is still at rv
// (a conflict error otherwise); force overwrites whatever is there.
func (s *Store) putDirect(bucket, key string, raw []byte, rv string, force bool) error {
	ctx, cancel := s.opCtx()
	defer cancel()
	rec := s.directRecord(bucket, key, raw)
	if rv == "" {
		_, err := s.secrets.Create(ctx, rec, metav1.CreateOptions{})
		if !force || !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	rec.ResourceVersion = rv
	if force {
		rec.ResourceVersion = ""
	}
	_, err := s.secrets.Update(ctx, rec, metav1.UpdateOptions{})
	return err
}

// SSFStreamID implements store.Backend.
func (s *Store) SSFStreamID(issuer string) (string, error) {
	if err := store.CheckKey(bucketSSFStreams, issuer); err != nil {
		return "", err
	}
	raw, _, _, err := s.getDirect(bucketSSFStreams, issuer)
	if err != nil {
		return "", apiErrKeep(bucketSSFStreams+" "+strconv.Quote(issuer), err)
	}
	return string(raw), nil
}

// SetSSFStreamID implements store.Backend; the last writer wins.
func (s *Store) SetSSFStreamID(issuer, id string) error {
	if err := store.CheckKey(bucketSSFStreams, issuer); err != nil {
		return err
	}
	if err := store.CheckKey(bucketSSFStreams, id); err != nil {
		return fmt.Errorf("stream id: %w", err)
	}
	if err := s.putDirect(bucketSSFStreams, issuer, []byte(id), "", true); err != nil {
		return apiErr(bucketSSFStreams+" "+strconv.Quote(issuer), err)
	}
	return nil
}

// SwapWitnessed implements store.Backend with optimistic concurrency: the record is written on the condition
// that it is still the one next saw (created on the condition that there was none), and next runs again on the
// newer record when another instance wrote first.
func (s *Store) SwapWitnessed(id string, next func(old *agentauthv1.WitnessedCheckpoint) (*agentauthv1.WitnessedCheckpoint, error)) error {
	if err := store.CheckKey(bucketWitnessed, id); err != nil {
		return err
	}
	what := bucketWitnessed + " " + strconv.Quote(id)
	err := retry.OnError(conflictRetry, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
	}, func() error {
		raw, rv, ok, err := s.getDirect(bucketWitnessed, id)
		if err != nil {
			return err
		}
		var old *agentauthv1.WitnessedCheckpoint
		if ok {
			old = &agentauthv1.WitnessedCheckpoint{}
			if err := proto.Unmarshal(raw, old); err != nil {
				return fmt.Errorf("kubestore: %s: %w: %v", what, store.ErrCorrupt, err)
			}
			if old.GetSpiffeId() != id {
				return fmt.Errorf("kubestore: %s: %w: the value names %q", what, store.ErrCorrupt, old.GetSpiffeId())
			}
		}
		v, err := next(old)
		if err != nil || v == nil {
			return err
		}
		if v.GetSpiffeId() != id {
			return fmt.Errorf("kubestore: %s: the value names %q", what, v.GetSpiffeId())
		}
		out, err := store.Marshal(v)
		if err != nil {
			return err
		}
		return s.putDirect(bucketWitnessed, id, out, rv, false)
	})
	if err != nil {
		return apiErrKeep(what, err)
	}
	return nil
}
