// Package wire is the framing and payload encoding of the device protocol
// between the shim's Unix-socket transport (package fpga) and the emulator
// (package fpga/emu). docs/fpga.md describes the frames.
//
// A frame is a 4-byte little-endian length of what follows, then version
// (1 byte), op (1 byte), status (2 bytes, 0 in requests), request id
// (4 bytes) and the payload. Responses echo the op and the request id.
// Decoding is strict: every payload reader reports truncation and trailing
// bytes as errors wrapping ErrMalformed.
//
// Revision 2 of the protocol adds OpHello (revision and capability
// negotiation, Hello) and OpSubmit (a fused inference, Submit), with
// encoders and decoders shared by both ends. BeginFrame, EndFrame and
// ReadFrameBuf let either end build and read frames in reused buffers.
package wire
