// Command hello prints a greeting.
package main

import (
	"fmt"

	"example.com/gcptest/lib"
)

func main() {
	fmt.Println(lib.Greeting("gopher"))
}
