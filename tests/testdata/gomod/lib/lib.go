// Package lib is a tiny library for the plugin's end-to-end tests.
package lib

import (
	"fmt"
	"strings"
)

// Greeting returns a greeting for name.
func Greeting(name string) string {
	return fmt.Sprintf("hello, %s", strings.TrimSpace(name))
}
