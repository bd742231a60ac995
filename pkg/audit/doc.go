// Package audit is a sidecar's tamper-evident decision log: JSON-lines records in numbered files that continue one
// RFC 6962 / RFC 9162 Merkle tree (github.com/transparency-dev/merkle), with signed checkpoints in the C2SP
// tlog-checkpoint format (golang.org/x/mod/sumdb/note), inclusion proofs, and a verifier that names the first bad
// record.
//
// Writing: Writer.Append gives a record the next leaf index and the leaf hash of its predecessor (Prev), writes it
// and returns once it is durable. Durability Sync returns once the record is fsynced; concurrent appends share one
// fsync (group commit), so neither a process nor a machine crash loses an acknowledged record. Durability Batched
// returns once the record is written to the file, and fsyncs in the background within BatchWait: a process crash
// (kill -9) loses no acknowledged record, a machine crash loses at most the last BatchWait, and no Append waits for
// the disk. Checkpoints sign only what is fsynced. A write cut short by a crash leaves a partial last line, which
// Open cuts and Verify reports as a torn tail. A write or fsync error (a full disk) makes every later Append fail
// with ErrUnavailable: the caller decides whether that refuses requests (fail-closed) or not.
//
// The leaf of record i is its line exactly as written, without the newline. Files rotate by size; a record never
// spans two files, and the tree continues across them. The tree state (its compact range) is saved with every
// checkpoint so a restart resumes without rehashing the whole log.
//
// Checkpoints: every CheckpointInterval the writer signs "origin\nsize\nbase64(root)\n" as a signed note and
// appends it to the checkpoints file. The key is Ed25519 (signed-note signature type 0x01), the one type
// golang.org/x/mod/sumdb/note implements and every C2SP verifier and witness accepts; the sidecar's SVID key (ECDSA
// P-256, usually) does not sign checkpoints itself, because the signed-note ECDSA type (0x02) is defined only by
// reference to one implementation and is not what witnesses verify. Instead the SVID certifies the audit key:
// CertifyKey makes a compact JWS, signed with the SVID's key and carrying its chain, stating the note verifier
// key; VerifyKeyCertificate checks it against the trust bundle at the time it was made, and requires the key's
// name (the log's origin) to be OriginFor the SVID's SPIFFE ID. So a checkpoint verifies against the trust bundle.
//
// Verification: Verify rebuilds the tree from the records and compares it with every checkpoint. Index gaps,
// repeats and swaps name a deleted, inserted or reordered record; a broken Prev chain names an edited record; a
// checkpoint larger than the log names a truncation; a root mismatch with everything else intact names the last
// record under that checkpoint.
package audit
