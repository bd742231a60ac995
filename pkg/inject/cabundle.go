package inject

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// BundleKeeper keeps the caBundle of every webhook of one MutatingWebhookConfiguration (and, when named, one
// ValidatingWebhookConfiguration) equal to the CA certificates the serving certificate is issued from. It checks
// at start and then every Interval, so it also puts back a caBundle that `helm upgrade` (whose template has none)
// or a person emptied; it writes only when the value differs, with the object's resourceVersion, so replicas
// racing to write the same bundle do no harm.
type BundleKeeper struct {
	Client kubernetes.Interface
	// Name is the MutatingWebhookConfiguration's name.
	Name string
	// Validating, when set, is a ValidatingWebhookConfiguration's name served by the same server.
	Validating string
	// Bundle returns the PEM CA certificates (the controller's CA).
	Bundle func() []byte
	// Interval between checks (default 1m).
	Interval time.Duration
	Log      *zap.Logger
}

// Sync makes the caBundles current once; it reports whether it wrote. Each configuration is synced even if the
// other fails.
func (k *BundleKeeper) Sync(ctx context.Context) (bool, error) {
	want := k.Bundle()
	wrote, err := k.syncMutating(ctx, want)
	if k.Validating == "" {
		return wrote, err
	}
	wroteV, errV := k.syncValidating(ctx, want)
	return wrote || wroteV, errors.Join(err, errV)
}

func (k *BundleKeeper) syncMutating(ctx context.Context, want []byte) (bool, error) {
	api := k.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cfg, err := api.Get(ctx, k.Name, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("inject: reading MutatingWebhookConfiguration %s: %w", k.Name, err)
	}
	bundles := make([]*[]byte, len(cfg.Webhooks))
	for i := range cfg.Webhooks {
		bundles[i] = &cfg.Webhooks[i].ClientConfig.CABundle
	}
	return writeBundles(bundles, want, "MutatingWebhookConfiguration "+k.Name, func() error {
		_, err := api.Update(ctx, cfg, metav1.UpdateOptions{FieldManager: fieldManager})
		return err
	})
}

func (k *BundleKeeper) syncValidating(ctx context.Context, want []byte) (bool, error) {
	api := k.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	cfg, err := api.Get(ctx, k.Validating, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("inject: reading ValidatingWebhookConfiguration %s: %w", k.Validating, err)
	}
	bundles := make([]*[]byte, len(cfg.Webhooks))
	for i := range cfg.Webhooks {
		bundles[i] = &cfg.Webhooks[i].ClientConfig.CABundle
	}
	return writeBundles(bundles, want, "ValidatingWebhookConfiguration "+k.Validating, func() error {
		_, err := api.Update(ctx, cfg, metav1.UpdateOptions{FieldManager: fieldManager})
		return err
	})
}

// fieldManager names the controller in the managed fields of what it writes.
const fieldManager = "agentauth-controller"

// writeBundles sets each of a configuration's webhook caBundles to want and, when one differed, writes the
// configuration with update; what names it in errors.
func writeBundles(bundles []*[]byte, want []byte, what string, update func() error) (bool, error) {
	changed := false
	for _, b := range bundles {
		if !bytes.Equal(*b, want) {
			*b = want
			changed = true
		}
	}
	if !changed {
		return false, nil
	}
	if err := update(); err != nil {
		return false, fmt.Errorf("inject: updating the caBundle of %s: %w", what, err)
	}
	return true, nil
}

// Run syncs now and every Interval until ctx ends; failures are logged and retried at the next tick.
func (k *BundleKeeper) Run(ctx context.Context) {
	every := k.Interval
	if every <= 0 {
		every = time.Minute
	}
	for {
		wrote, err := k.Sync(ctx)
		switch {
		case apierrors.IsConflict(err):
			k.Log.Debug("caBundle update raced another writer; checking again", zap.Error(err))
		case err != nil && ctx.Err() == nil:
			k.Log.Error("caBundle not kept current", zap.Error(err))
		case wrote:
			k.Log.Info("caBundle of the webhook configurations updated", zap.String("name", k.Name),
				zap.String("validating", k.Validating))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
