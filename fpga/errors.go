package fpga

import (
	"errors"
	"fmt"
)

// Error classes. Every error from a Device wraps one of them.
var (
	// ErrTimeout: a kernel did not finish before the wait deadline.
	ErrTimeout = errors.New("fpga: timeout")
	// ErrDMA: a host↔device transfer failed: timed out on the card or
	// arrived corrupted (CRC mismatch).
	ErrDMA = errors.New("fpga: dma failure")
	// ErrReset: the card reset; programs and buffers are gone and must be
	// reloaded.
	ErrReset = errors.New("fpga: device reset")
	// ErrDeviceLost: the card does not answer (or is unreachable); a reset
	// does not help.
	ErrDeviceLost = errors.New("fpga: device lost")
	// ErrNotFound: no such program, buffer or run (often after a reset).
	ErrNotFound = errors.New("fpga: no such handle")
	// ErrNoMemory: on-card memory is exhausted.
	ErrNoMemory = errors.New("fpga: out of device memory")
	// ErrBadAddress: a copy or kernel reached memory outside a buffer.
	ErrBadAddress = errors.New("fpga: bad device address")
	// ErrIncompatible: a program does not fit this card (array size,
	// on-chip memory).
	ErrIncompatible = errors.New("fpga: program incompatible with device")
	// ErrProgram: the card refused a malformed program image.
	ErrProgram = errors.New("fpga: malformed program")
	// ErrBusy: the card is running another kernel.
	ErrBusy = errors.New("fpga: device busy")
	// ErrExec: a kernel faulted (illegal instruction operand).
	ErrExec = errors.New("fpga: kernel fault")
	// ErrProtocol: the transport received something it did not expect.
	ErrProtocol = errors.New("fpga: protocol error")
	// ErrUnsupported: the transport cannot do this (for example fault
	// injection on a real card).
	ErrUnsupported = errors.New("fpga: unsupported by transport")
)

// DeviceError is a failed device operation.
type DeviceError struct {
	Op     string // "write", "wait", ...
	Detail string // the device's or transport's message
	Err    error  // one of the sentinels above
}

func (e *DeviceError) Error() string {
	return fmt.Sprintf("fpga %s: %s: %v", e.Op, e.Detail, e.Err)
}

func (e *DeviceError) Unwrap() error { return e.Err }

// Recoverable reports whether a reset and reprogram may cure err: a reset,
// a timeout, a DMA failure, a lost handle or a kernel fault, but not a lost
// device or a program the card refuses.
func Recoverable(err error) bool {
	for _, s := range []error{ErrReset, ErrTimeout, ErrDMA, ErrNotFound, ErrExec, ErrBusy, ErrProtocol} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
