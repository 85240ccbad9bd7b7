package isa

import "errors"

var (
	// ErrMalformed means program bytes are not a well-formed program:
	// bad magic, truncated, bad checksum, unknown opcode, inconsistent sizes.
	ErrMalformed = errors.New("malformed fpga program")
	// ErrVersion means the program was built for another format version.
	ErrVersion = errors.New("unsupported fpga program version")
	// ErrBounds means an instruction reaches outside the on-chip memory the
	// program declares.
	ErrBounds = errors.New("on-chip access out of bounds")
)
