package crd

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// Watch follows every object of the cluster-scoped resource res (CedarPolicies or SSFTransmitters; T is its Go
// type) and calls onChange with all of them, sorted by name: once the first list is complete (never with a
// partial one, so an empty slice means there are none) and after every change, until ctx ends. Calls are serial,
// and changes that arrive while one runs coalesce into the next. If an object does not decode into T, the change
// is logged and onChange is not called: the caller keeps what it has rather than act on a set missing an object.
// Watch returns when ctx ends; its error says only that the first list never completed.
func Watch[T any](ctx context.Context, client dynamic.Interface, res schema.GroupVersionResource, log *zap.Logger, onChange func([]T)) error {
	inf := dynamicinformer.NewFilteredDynamicInformer(client, res, "", 0, cache.Indexers{}, nil).Informer()
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}); err != nil {
		return fmt.Errorf("crd: watching %s: %w", res.Resource, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		inf.RunWithContext(ctx)
	}()
	defer func() { <-done }()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("crd: listing %s: %w", res.Resource, context.Cause(ctx))
	}
	for {
		objs, err := decodeAll[T](inf.GetStore().List())
		if err != nil {
			log.Error("custom resources not applied: one does not decode", zap.String("resource", res.Resource), zap.Error(err))
		} else {
			onChange(objs)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// decodeAll converts the informer's objects to T, sorted by name.
func decodeAll[T any](items []any) ([]T, error) {
	us := make([]*unstructured.Unstructured, 0, len(items))
	for _, it := range items {
		if u, ok := it.(*unstructured.Unstructured); ok {
			us = append(us, u)
		}
	}
	slices.SortFunc(us, func(a, b *unstructured.Unstructured) int { return strings.Compare(a.GetName(), b.GetName()) })
	out := make([]T, len(us))
	for i, u := range us {
		if err := Decode(u, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Decode converts an object of the dynamic client into its Go type.
func Decode[T any](u *unstructured.Unstructured, into *T) error {
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), into); err != nil {
		return fmt.Errorf("crd: %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return nil
}
