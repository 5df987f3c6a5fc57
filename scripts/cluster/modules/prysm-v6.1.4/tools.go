//go:build tools

// Package tools names the program this module builds.
package tools

import _ "github.com/OffchainLabs/prysm/v6/cmd/validator"
