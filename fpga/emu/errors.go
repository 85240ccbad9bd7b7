package emu

import "errors"

var (
	// ErrIncompatible: a program was built for another array size or needs
	// more on-chip memory than the device has.
	ErrIncompatible = errors.New("program incompatible with device")
	// ErrIllegal: an instruction faulted at run time (bad requantization
	// shift, unknown opcode).
	ErrIllegal = errors.New("illegal instruction")
	// ErrBadAddress: a DMA or host copy reached DRAM that is not allocated.
	ErrBadAddress = errors.New("bad device address")
	// ErrNoMemory: on-card memory is exhausted.
	ErrNoMemory = errors.New("out of device memory")
	// ErrNotFound: no such buffer, program or run handle (for example after
	// a reset invalidated it).
	ErrNotFound = errors.New("no such handle")
	// ErrDMATimeout: a DMA transfer did not complete (injected fault).
	ErrDMATimeout = errors.New("dma timeout")
	// ErrDeviceLost: the device stopped responding (injected fault); only a
	// restart of the emulator brings it back.
	ErrDeviceLost = errors.New("device lost")
	// ErrBusy: the device is running a kernel and cannot accept another.
	ErrBusy = errors.New("device busy")
	// ErrReset: the card reset while handling the request (injected
	// fault); every handle is gone.
	ErrReset = errors.New("device reset")
	// ErrWaitTimeout: Wait's deadline passed before the run finished.
	ErrWaitTimeout = errors.New("wait deadline exceeded")
)
