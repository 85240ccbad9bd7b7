// Package blobfs implements hub.Blobs on a local directory.
//
// A blob lives at DIR/sha256/ab/abcdef… (its lowercase hex sha256, fanned
// out by the first two characters). Put streams the content to a temporary
// file in DIR/tmp while hashing it, fsyncs it, renames it to its address
// and fsyncs the directory, so a blob either exists whole under its true
// hash or not at all. Content already stored is not written again.
//
// It does not know which blobs are referenced: garbage collection belongs
// to the store's owner (not implemented yet).
package blobfs
