// Package lineproto parses the line protocol a run's program prints on
// stdout to report metrics, params and tags:
//
//	::metric name=NAME value=VALUE [step=N]
//	::param name=NAME value=VALUE
//	::tag name=NAME value=VALUE
//
// Grammar (ABNF-like; SP is one or more spaces or tabs):
//
//	line   = "::" kind *(SP field) [SP]
//	kind   = "metric" / "param" / "tag"
//	field  = key "=" value
//	key    = "name" / "value" / "step"
//	value  = bare / quoted
//	bare   = 1*(any character but space, tab and '"')
//	quoted = '"' *(any character but '"' and '\' / "\" ('"' / "\" / "n" / "t")) '"'
//
// A line is a directive when it starts with "::" in its first column; a
// trailing "\r" is dropped. Each field appears at most once; name and value
// are required, step is allowed on metrics only. NAME follows the hub's key
// rule (hub.KeyRule). A metric VALUE is a finite decimal or exponent number
// (strconv.ParseFloat), a STEP a non-negative integer; a param or tag VALUE
// is any string up to hub.MaxValueLen bytes ("" via value=""). Any line
// that starts with "::" and breaks these rules is malformed: Parse returns
// an error saying what is wrong, and the caller logs it as a normal line.
//
// The package only parses; it does not send anything or assign steps.
package lineproto
