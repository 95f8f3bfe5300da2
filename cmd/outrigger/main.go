// Command outrigger is the database-access sidecar. See package cli.
package main

import (
	"context"
	"os"

	"github.com/outrigger/outrigger/cmd/outrigger/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], cli.Options{}))
}
