// Package modelcache is the agent's content-addressed model store.
//
// It owns the directory DATA/models:
//
//	DATA/models/<sha256>                  a verified model file, named by its digest
//	DATA/models/partial/<sha256>.part     a transfer in progress: verified chunks, in order
//	DATA/models/partial/<sha256>.progress "atelier-partial/1 <sha256> <chunk_size> <next>\n"
//
// Fetch downloads a model described by an agentv1.ModelRef through a
// ChunkSource (the MQTT transport in production, anything in tests): each
// chunk is hashed on arrival and appended; every Config.SyncBytes (default
// 4 MiB) and before an error is returned the file is fsynced and the index
// of the next chunk recorded, so a transfer interrupted by a disconnect
// resumes after the last verified chunk, and one interrupted by a crash
// after the last checkpoint. On resume the partial file is
// re-hashed chunk by chunk up to the recorded index (the record is a bound,
// not trusted blindly). The complete file is checked against the model's
// sha256, then renamed to its digest and the directory fsynced. A digest
// already cached is never fetched again; Get re-hashes a cached file before
// handing out its path and removes it if it no longer matches.
//
// GC keeps the models in use plus the Config.Keep most recently used
// (default 3), using file modification times, which Get refreshes.
//
// The package does not know about MQTT, deployments or loading models.
package modelcache
