package controller

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"

	"go.uber.org/zap"
)

// find returns c's component of type T, and panics without one.
func find[T component](c *Controller) T {
	for _, comp := range c.components {
		if t, ok := comp.(T); ok {
			return t
		}
	}
	panic("controller: no such component")
}

func (c *Controller) issuerLn() net.Listener { return find[*issuerServer](c).ln }
func (c *Controller) xdsLn() net.Listener    { return find[*xdsServer](c).ln }
func (c *Controller) opsLn() net.Listener    { return find[*opsServer](c).ln }
func (c *Controller) ssfLn() net.Listener    { return find[*ssfServer](c).ln }
func (c *Controller) tokenLn() net.Listener  { return find[*tokenServer](c).ln }

// recorder is a component that records its lifecycle calls in a shared log.
type recorder struct {
	name     string
	log      *[]string
	startErr error
	serveErr error
}

func (r *recorder) provision(context.Context) error {
	*r.log = append(*r.log, "provision "+r.name)
	return nil
}

func (r *recorder) start(_ context.Context, fail func(error)) error {
	*r.log = append(*r.log, "start "+r.name)
	if r.serveErr != nil {
		fail(r.serveErr)
	}
	return r.startErr
}

func (r *recorder) stop(context.Context) { *r.log = append(*r.log, "stop "+r.name) }

// TestRunLifecycle: Run starts the components in list order and stops them in reverse, after ctx ends, after one
// fails while serving, or after one fails to start: then only those started are stopped, and Run returns its error.
func TestRunLifecycle(t *testing.T) {
	boom := errors.New("boom")
	for _, tt := range []struct {
		name               string
		startErr, serveErr error
		want               []string
		wantErr            error
	}{
		{"ctx ends", nil, nil, []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}, nil},
		{"b fails serving", nil, boom, []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}, boom},
		{"b fails to start", boom, nil, []string{"start a", "start b", "stop a"}, boom},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(context.Background(), testConfig(t, ""), zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			var log []string
			c.components = []component{&recorder{name: "a", log: &log},
				&recorder{name: "b", log: &log, startErr: tt.startErr, serveErr: tt.serveErr}, &recorder{name: "c", log: &log}}
			ctx, cancel := context.WithCancel(context.Background())
			if tt.serveErr == nil && tt.startErr == nil {
				cancel()
			}
			defer cancel()
			if err := c.Run(ctx); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Run: %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(log, tt.want) {
				t.Fatalf("lifecycle %q, want %q", log, tt.want)
			}
		})
	}
}
