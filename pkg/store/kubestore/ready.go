package kubestore

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// readyTimeout bounds Ready's request: a readiness probe must answer before the kubelet gives up on it.
const readyTimeout = 2 * time.Second

// Ready lists one of the store's Secrets through the API server. The informer's cache keeps answering reads when
// the API server is gone, so only a request says whether this replica can still write and still sees what other
// replicas write (a revocation pushed to another replica, for one).
func (s *Store) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if _, err := s.secrets.List(ctx, metav1.ListOptions{LabelSelector: LabelStore + "=" + s.opts.Name, Limit: 1}); err != nil {
		return apiErr("the Kubernetes API server", err)
	}
	return nil
}
