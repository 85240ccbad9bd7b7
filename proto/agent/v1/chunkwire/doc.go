// Package chunkwire encodes and decodes ChunkResponse (proto/agent/v1) by
// hand, without copying the chunk's data: the hub reads a chunk from its
// blob straight into the message buffer, and the agent takes the data as a
// sub-slice of the MQTT payload. The generated code copies the data once
// each way (a 256 KiB allocation per chunk per agent on both sides), which
// in a rollout to many agents was most of the garbage collector's work.
//
// The wire format is exactly the generated code's: Decode accepts what
// proto.Unmarshal accepts (unknown fields skipped, the last occurrence of
// a field winning, strings required to be UTF-8) and a fuzz test holds the
// two to the same answers. Every other message uses the generated code.
package chunkwire
