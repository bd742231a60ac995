package store_test

import (
	"path/filepath"
	"testing"

	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/store/storetest"
)

func TestBackendContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend {
		s, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
