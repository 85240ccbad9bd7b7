// Package proto holds the protobuf definitions of the hub ↔ agent protocol
// and their generated Go code (package agentv1 under agent/v1). The topic
// layout and the message flows are documented in docs/protocol.md.
//
// Regenerate with `make proto`; CI checks that the committed code matches.
package proto

//go:generate protoc --go_out=. --go_opt=paths=source_relative agent/v1/agent.proto
