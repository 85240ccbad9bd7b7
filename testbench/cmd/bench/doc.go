// Command bench runs Atelier's benchmarks. Each prints a table of what it
// measured beside the limit it is compared to, or a JSON object with --json.
//
//	go run ./testbench/cmd/bench NAME [flags]
package main
