package steps

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestReadBuffered(t *testing.T) {
	body := []byte(`{"jsonrpc":"2.0","id":1}`)
	n := int64(len(body))
	tests := []struct {
		name    string
		r       io.Reader
		n       int64
		want    []byte
		wantErr error
	}{
		{"exact length", bytes.NewReader(body), n, body, nil},
		{"unknown length", bytes.NewReader(body), -1, body, nil},
		{"empty", bytes.NewReader(nil), 0, []byte{}, nil},
		{"more than the length", bytes.NewReader(body), n - 5, body, nil},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(body)), n, body, nil},
		{"shorter than the length", bytes.NewReader(body), n + 1, nil, io.ErrUnexpectedEOF},
		{"read error after the length", io.MultiReader(bytes.NewReader(body), iotest.ErrReader(errors.New("boom"))), n, nil, errors.New("boom")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readBuffered(tt.r, tt.n)
			if (err == nil) != (tt.wantErr == nil) || (err != nil && err.Error() != tt.wantErr.Error()) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && !bytes.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
