package store

import (
	"errors"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// TestSSFStreamIDs: a stream id is remembered per transmitter, replaced by the next, and kept across a reopen.
func TestSSFStreamIDs(t *testing.T) {
	s, path := openTemp(t)
	if id, err := s.SSFStreamID("https://idp.example"); err != nil || id != "" {
		t.Fatalf("unknown transmitter: %q, %v", id, err)
	}
	for _, id := range []string{"stream-1", "stream-2"} {
		if err := s.SetSSFStreamID("https://idp.example", id); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetSSFStreamID("https://other.example", "s"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSSFStreamID("https://idp.example", ""); !errors.Is(err, autherr.ErrMalformed) {
		t.Fatalf("empty stream id: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for issuer, want := range map[string]string{"https://idp.example": "stream-2", "https://other.example": "s"} {
		if id, err := s.SSFStreamID(issuer); err != nil || id != want {
			t.Errorf("%s: %q, %v; want %q", issuer, id, err, want)
		}
	}
}
