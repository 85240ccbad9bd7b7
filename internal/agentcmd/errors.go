package agentcmd

import "errors"

// errUsage marks errors in the command line (exit code 2).
var errUsage = errors.New("usage")
