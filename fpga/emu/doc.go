// Package emu emulates Atelier's int8 inference card faithfully enough that
// the shim (package fpga), the compiler and the agent cannot tell it from
// hardware: the same program format (package fpga/isa), bit-exact
// deterministic execution, a cycle count per instruction, bounded on-card
// DRAM and on-chip memories, and the device protocol over a Unix socket.
//
// Core executes programs. Device adds DRAM with an allocator, loaded
// programs, asynchronous kernel runs and fault injection (reset, DMA
// timeout, bit flip, device lost). Serve answers the device protocol
// (package fpga/internal/wire, revision 2: a fused OpSubmit is executed
// as the separate requests it stands for, so faults fire the same way) on
// a listener; the CLI runs it as `atelier-agent fpga sim`.
//
// By default a run finishes as fast as the host computes it and reports
// its modelled device time with its cycle count; Config.Pace makes runs
// take at least that long.
package emu
