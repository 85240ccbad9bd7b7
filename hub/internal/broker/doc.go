// Package broker runs the hub's embedded NATS server with JetStream and
// its MQTT 3.1.1 listener (github.com/nats-io/nats-server/v2). The broker
// is transport, not storage of record: nothing the hub promises to keep may
// live only here.
//
// It does not define topics or authenticate agents yet; the hub side of the
// agent protocol will build on it.
package broker
