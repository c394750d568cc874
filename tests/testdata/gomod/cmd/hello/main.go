// Command hello prints a greeting.
package main

import (
	"fmt"
	"net/http"

	"example.com/gcptest/lib"
)

func main() {
	fmt.Println(lib.Greeting("gopher"), http.StatusOK)
}
