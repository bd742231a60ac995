package kubestore

import (
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/store"
)

const bucketSETs = "set_jti"

// MarkSET implements store.Backend with create-if-absent: the first instance to create the record wins, and
// AlreadyExists means a duplicate unless the existing record's keepUntil has passed, in which case it is
// overwritten on the condition that nobody else did so first.
func (s *Store) MarkSET(issuer, jti string, keepUntil, now time.Time) error {
	if jti == "" {
		return fmt.Errorf("kubestore: %s: %w: empty jti", bucketSETs, autherr.ErrMalformed)
	}
	key := store.SETKey(issuer, jti)
	if err := store.CheckKey(bucketSETs, key); err != nil {
		return err
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	rec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      s.secretName(bucketSETs, key),
			Namespace: s.opts.Namespace,
			Labels:    map[string]string{LabelSETs: s.opts.Name},
		},
		Type: SecretType,
		Data: map[string][]byte{dataKey: []byte(key), dataUntil: []byte(strconv.FormatInt(keepUntil.UnixNano(), 10))},
	}
	_, err := s.secrets.Create(ctx, rec, metav1.CreateOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return apiErr(bucketSETs, err)
	}
	old, err := s.secrets.Get(ctx, rec.Name, metav1.GetOptions{})
	if err != nil {
		return apiErr(bucketSETs, err)
	}
	until, err := setUntil(old, key)
	if err != nil {
		return err
	}
	replay := fmt.Errorf("kubestore: %w: SET jti %q from %q was already processed", autherr.ErrReplay, jti, issuer)
	if now.Before(until) {
		return replay
	}
	rec.ResourceVersion = old.ResourceVersion
	_, err = s.secrets.Update(ctx, rec, metav1.UpdateOptions{})
	switch {
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		// Another instance re-marked (or pruned) the expired record first: it processes this delivery.
		return replay
	case err != nil:
		return apiErr(bucketSETs, err)
	}
	return nil
}

func setUntil(sec *corev1.Secret, key string) (time.Time, error) {
	if string(sec.Data[dataKey]) != key {
		return time.Time{}, fmt.Errorf("kubestore: %s %q: %w: the record names key %q", bucketSETs, key, store.ErrCorrupt, sec.Data[dataKey])
	}
	ns, err := strconv.ParseInt(string(sec.Data[dataUntil]), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("kubestore: %s %q: %w: %v", bucketSETs, key, store.ErrCorrupt, err)
	}
	return time.Unix(0, ns), nil
}

// PruneSETs implements store.Backend: it lists the SET records from the API server (the informer does not cache
// them) and deletes each expired one on the condition that it was not re-marked meanwhile.
func (s *Store) PruneSETs(now time.Time) (int, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	list, err := s.secrets.List(ctx, metav1.ListOptions{LabelSelector: LabelSETs + "=" + s.opts.Name})
	if err != nil {
		return 0, apiErr(bucketSETs, err)
	}
	n := 0
	for i := range list.Items {
		sec := &list.Items[i]
		if until, err := setUntil(sec, string(sec.Data[dataKey])); err == nil && now.Before(until) {
			continue
		}
		rv := sec.ResourceVersion
		err := s.secrets.Delete(ctx, sec.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
		switch {
		case err == nil:
			n++
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		default:
			return n, apiErr(bucketSETs, err)
		}
	}
	return n, nil
}

// UseJoinToken implements store.Backend: it reads the token from the API server and marks it used with the
// read's resourceVersion as precondition, so of two instances admitting the same token one gets a conflict,
// re-reads, and finds it used.
func (s *Store) UseJoinToken(id string, now time.Time) (*agentauthv1.JoinToken, error) {
	if err := store.CheckKey(store.BucketJoinTokens, id); err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	name := s.secretName(store.BucketJoinTokens, id)
	var (
		out *agentauthv1.JoinToken
		rv  uint64
	)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sec, err := s.secrets.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("kubestore: %w: unknown join token", autherr.ErrDenied)
		}
		if err != nil {
			return err
		}
		t, err := s.joinTokens.decode(id, sec.Data[dataValue])
		if err != nil {
			return err
		}
		switch {
		case t.GetUsed():
			return fmt.Errorf("kubestore: %w: join token for %s was already used at %s", autherr.ErrReplay,
				t.GetSpiffeId(), t.GetUsedAt().AsTime().Format(time.RFC3339))
		case t.GetExpires() != nil && !now.Before(t.GetExpires().AsTime()):
			return fmt.Errorf("kubestore: %w: join token for %s expired at %s", autherr.ErrExpired,
				t.GetSpiffeId(), t.GetExpires().AsTime().Format(time.RFC3339))
		}
		t.Used = true
		t.UsedAt = timestamppb.New(now)
		raw, err := store.Marshal(t)
		if err != nil {
			return err
		}
		upd := s.record(store.BucketJoinTokens, id, raw)
		upd.ResourceVersion = sec.ResourceVersion
		got, err := s.secrets.Update(ctx, upd, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		out, rv = t, parseRV(got.ResourceVersion)
		return nil
	})
	if err != nil {
		return nil, apiErrKeep(store.BucketJoinTokens, err)
	}
	if _, err := s.awaitWritten(ctx, name, rv); err != nil {
		return nil, err
	}
	return out, nil
}

// apiErrKeep wraps an API error like apiErr, and passes the store's own errors through.
func apiErrKeep(what string, err error) error {
	if _, ok := err.(apierrors.APIStatus); ok {
		return apiErr(what, err)
	}
	return err
}
