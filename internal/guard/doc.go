// Package guard is the rule language of a deployment's rollback rules
// (hub.GuardRules, agentv1.GuardRules): it parses an expression such as
//
//	error_rate > 0.05 or latency_p99 > 50ms
//
// and evaluates it over a window of one model version's scoring totals
// (the difference of two scoring.VersionStats snapshots of the same load).
// The hub parses to validate what users write; the agent parses again and
// evaluates during probation.
//
// Grammar (keywords and metric names are case-sensitive, lower case):
//
//	expr       = and { "or" and }
//	and        = unary { "and" unary }
//	unary      = "not" unary | "(" expr ")" | comparison
//	comparison = metric op value
//	op         = ">" | ">=" | "<" | "<="
//
// Metrics and the values they compare with:
//
//	error_rate                      failed / all requests in the window; a fraction
//	                                (0.05) or a percentage (5%), within [0, 1]
//	latency_p50, latency_p95,       quantiles of the end-to-end request time; a
//	latency_p99                     duration with a unit: ns, us (µs), ms, s, m
//	queue_p99                       99th percentile of the time spent queued; a duration
//	requests, errors                counts in the window; a non-negative integer
//
// "Failed" means the outcomes error, timeout, unavailable and queue_full:
// the serving side's fault. invalid and canceled requests are the caller's
// and count in requests but not in errors. A latency quantile of an empty
// window is undefined and every comparison with it is false.
//
// Parse errors are *SyntaxError values carrying the 1-based column.
//
// The package does not collect stats, hold a clock or decide probation:
// the agent does (agent/guard.go).
package guard
