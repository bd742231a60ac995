// Package atomicfile replaces a file's contents all at once: readers, and a restart after a crash, see the old
// contents or the new ones, never a mix.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes data to a new file beside path (mode 0600), syncs it and renames it over path.
func Write(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
