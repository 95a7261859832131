// Command procon-cdc streams the committed changes of PostgreSQL tables into Kafka as
// Debezium-compatible events.
package main

import (
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("procon-cdc", version)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: procon-cdc version")
	os.Exit(2)
}
