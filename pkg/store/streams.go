package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketSSFStreams maps an SSF transmitter's issuer to the id of the stream the controller created there.
const bucketSSFStreams = "ssf_streams"

// SSFStreamID returns the id of the SSF stream remembered for the transmitter issuer, or "" when none is.
func (s *Store) SSFStreamID(issuer string) (string, error) {
	if err := checkKey(bucketSSFStreams, issuer); err != nil {
		return "", err
	}
	var id string
	err := s.view(func(tx *bolt.Tx) error {
		id = string(tx.Bucket([]byte(bucketSSFStreams)).Get([]byte(issuer)))
		return nil
	})
	return id, err
}

// SetSSFStreamID remembers id as the SSF stream created at the transmitter issuer, replacing the one before.
func (s *Store) SetSSFStreamID(issuer, id string) error {
	if err := checkKey(bucketSSFStreams, issuer); err != nil {
		return err
	}
	if err := checkKey(bucketSSFStreams, id); err != nil {
		return fmt.Errorf("stream id: %w", err)
	}
	_, err := s.update(func(tx *bolt.Tx, _ uint64) ([]Change, bool, error) {
		return nil, true, tx.Bucket([]byte(bucketSSFStreams)).Put([]byte(issuer), []byte(id))
	})
	return err
}
