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
	changed := false
	for i := range cfg.Webhooks {
		if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, want) {
			cfg.Webhooks[i].ClientConfig.CABundle = want
			changed = true
		}
	}
	if !changed {
		return false, nil
	}
	if _, err := api.Update(ctx, cfg, metav1.UpdateOptions{FieldManager: "agentauth-controller"}); err != nil {
		return false, fmt.Errorf("inject: updating the caBundle of MutatingWebhookConfiguration %s: %w", k.Name, err)
	}
	return true, nil
}

func (k *BundleKeeper) syncValidating(ctx context.Context, want []byte) (bool, error) {
	api := k.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	cfg, err := api.Get(ctx, k.Validating, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("inject: reading ValidatingWebhookConfiguration %s: %w", k.Validating, err)
	}
	changed := false
	for i := range cfg.Webhooks {
		if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, want) {
			cfg.Webhooks[i].ClientConfig.CABundle = want
			changed = true
		}
	}
	if !changed {
		return false, nil
	}
	if _, err := api.Update(ctx, cfg, metav1.UpdateOptions{FieldManager: "agentauth-controller"}); err != nil {
		return false, fmt.Errorf("inject: updating the caBundle of ValidatingWebhookConfiguration %s: %w", k.Validating, err)
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
