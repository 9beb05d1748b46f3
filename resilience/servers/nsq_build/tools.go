//go:build tools

// Package tools records the programs this module builds, so `go mod tidy` keeps
// their dependencies in go.mod and go.sum. It is never compiled.
package tools

import (
	_ "github.com/nsqio/nsq/apps/nsqd"
	_ "github.com/nsqio/nsq/apps/nsqlookupd"
)
