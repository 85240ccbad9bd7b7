// Package filter parses the run query language of the hub's REST API: the
// filter expression of GET /runs?filter=EXPR and the order_by parameter.
// It produces hub.Cond and hub.Order values; translating them to a query
// language (SQL) is the store's business, not this package's.
//
// Grammar (keywords case-insensitive, whitespace between tokens ignored):
//
//	filter := cond { "and" cond }
//	cond   := field op value
//	field  := "metrics." KEY | "params." KEY | "tags." KEY | "status"
//	op     := "=" | "!=" | "<" | "<=" | ">" | ">="
//	value  := NUMBER | 'string' | "string"
//	order  := ( "metrics." KEY | "params." KEY | "tags." KEY | "created_at" ) [ ":asc" | ":desc" ]
//
// Metrics compare with numbers; params and tags compare as strings (a
// number written without quotes is compared as its text); status compares
// with = or != to one of the run statuses.
package filter
