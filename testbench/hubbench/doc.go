// Package hubbench measures the hub's hot paths against their aims:
// metric ingestion through the REST batch API (metric_points_per_sec),
// the raw SQLite insert rate into the same schema on the same disk
// (sqlite_points_per_sec, the limit ingestion is compared to), and the
// latency of the best-run query (best_run_query_ms) over 10,000 runs × 20
// metrics × 100 steps. It starts a real hub (server.New) on loopback in a
// temporary directory; it is run by testbench/cmd/bench as "bench hub".
package hubbench
