package lib

import "testing"

func TestGreeting(t *testing.T) {
	if got := Greeting(" gopher "); got != "hello, gopher" {
		t.Fatalf("Greeting() = %q", got)
	}
}
