// Package spool is the agent's store-and-forward queue for telemetry: a
// bounded, durable FIFO of opaque batches on local disk, each with a
// per-agent sequence number so the hub can ingest idempotently by
// (agent, sequence).
//
// # Lifecycle
//
// Open recovers the directory; the producer calls Append (or AppendBatch)
// for every batch, whether or not the hub is reachable; the consumer calls
// Peek for the oldest pending batches, sends them, and calls Ack with the
// highest sequence the hub confirmed (or Discard for batches the hub
// refused: acknowledged and counted as dropped). Close releases the open file. All
// methods are safe for concurrent use (one mutex; a Peek waits for an
// Append's fsync); the intended shape is one producer and one consumer.
//
// # Guarantees
//
//   - Append returns only after the record is fsynced (and, for a new
//     segment, the directory too): an acknowledged append survives kill -9
//     and power loss. Ack persists the cursor atomically (temp file, fsync,
//     rename, directory fsync) before it returns.
//   - Sequence numbers start at 1, increase by one per append and are never
//     returned twice by successful appends to one directory, across restarts, even when every
//     segment was acknowledged or dropped (the state file keeps the
//     high-water mark). They may have gaps: a failed append consumes its
//     numbers, and recovery skips past records lost to damage at the end of
//     the log (by an upper bound on how many could have been there), since a
//     consumer may already have sent them.
//   - Peek returns pending records in sequence order; after a crash between
//     sending and Ack, the same records are returned again (at-least-once;
//     the hub deduplicates by sequence).
//
// # Limits: drop oldest
//
// Config.MaxBytes bounds the segment files on disk (default 64 MiB): before
// an append that would exceed it, whole segments are dropped, oldest first
// (the current one too if it must). Config.MaxAge (default 24h) drops
// pending records older than it, oldest first, checked on Append and Peek.
// A drop moves the delivery cursor past the dropped records. Each
// undelivered batch dropped is counted in Stats.Dropped, which is persisted
// and never decreases, for the agent to report to the hub. Batches lost to
// on-disk damage are counted there too (an estimate: a damaged length field
// hides how many records followed); an incomplete record at the end of the
// log (a crash during an unacknowledged append) is not counted.
//
// # On-disk format
//
// The directory holds segment files and one state file:
//
//	NNNNNNNNNNNNNNNNNNNN.seg   records from sequence N (20 decimal digits)
//	state                      "atelier-spool/1 next=N acked=N dropped=N\n"
//
// A segment starts with the 8-byte magic "ATSPOOL\x01" followed by records:
//
//	[0:4]   crc32c (Castagnoli) of bytes [4:24+len] (header rest and payload)
//	[4:8]   payload length len, uint32 (at most MaxPayload, 4 MiB)
//	[8:16]  sequence number, uint64
//	[16:24] append time, Unix nanoseconds, int64
//	[24:]   payload
//
// Integers are little-endian. Segments close at Config.SegmentBytes
// (default 1 MiB); a segment is deleted once every record in it is
// acknowledged or dropped. Open never appends to an old segment.
//
// # Recovery
//
// Open scans every segment and verifies every record (CRC, length bound,
// increasing sequence). A segment is cut at its first bad record and the
// file truncated there; an incomplete last record is logged at info as a
// torn tail, anything else at warn with the bytes lost. Peek re-verifies
// each record it reads; one damaged after Open drops the rest of its
// segment (counted). A state file that does not parse makes Open fail with
// ErrBadState and leaves every file untouched.
//
// # What it does not do
//
// It does not know what a batch contains, talk to the hub or MQTT, retry or
// back off, or encrypt; the agent's telemetry code owns those.
package spool
