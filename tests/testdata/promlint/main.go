// Command promlint checks a Prometheus text exposition read from stdin with client_golang's
// promlint, the linter behind `promtool check metrics`: it prints one line per problem and exits
// 1 when there is any (3 when the input cannot be parsed). Built by
// scripts/install_test_servers.sh for tests/server/metrics_lint_test.ts.
package main

import (
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func main() {
	problems, err := promlint.New(os.Stdin).Lint()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error while linting:", err)
		os.Exit(3)
	}
	for _, p := range problems {
		fmt.Printf("%s: %s\n", p.Metric, p.Text)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}
