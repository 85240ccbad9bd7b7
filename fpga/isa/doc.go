// Package isa defines the instruction set of Atelier's int8 inference
// accelerator and the binary program format the compiler emits and the
// device (or its emulator, package fpga/emu) executes.
//
// The machine is a weight-stationary systolic array of R×C int8
// multiply-accumulate cells (32×32 by default) with int32 accumulators, an
// int8 scratchpad (SPAD) and an int32 accumulator memory (ACC) of bounded
// size, and a DMA engine between on-card DRAM and the two on-chip memories.
// Instructions are fixed-size (InstrSize bytes); docs/fpga.md lists each
// one with its operands, its exact arithmetic and its cycle cost.
//
// A Program is a versioned header, the instructions, a constant segment
// (quantized weights, biases, requantization parameters) and a CRC-32 of all
// preceding bytes. Decode is a parser of untrusted input: it checks the
// magic, version, sizes, checksum, every opcode and flag, and that every
// on-chip access of every instruction stays inside the on-chip sizes the
// header declares, so a decoded program cannot touch on-chip memory out of
// bounds. DRAM addresses depend on run-time arguments and are checked by
// the executor.
//
// This package does not execute programs (package fpga/emu does) and does
// not know about ONNX (package fpga/compiler does). All functions are safe
// for concurrent use.
package isa
