// Package api is the hub's REST API: HTTP handlers over a hub.Store and a
// hub.Blobs, exactly the routes listed in package hub's documentation, plus
// the OpenAPI document describing them.
//
// It owns request decoding (every body is read with a limit), validation
// errors that name what was wrong and where, the mapping of error classes to
// HTTP statuses, and the in-process notification that wakes log followers
// when lines are appended. It does not listen on sockets (hub/server does)
// and does not know SQL.
package api
