// Command postern is the user's CLI: it signs in through the company's SSO
// and loads a short-lived OpenSSH certificate into ssh-agent.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/postern-dev/postern/agent-helper/cli"
)

func main() {
	home := os.Getenv("POSTERN_HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			fmt.Fprintln(os.Stderr, "postern: error: cannot find your home directory; set POSTERN_HOME")
			os.Exit(1)
		}
		home = filepath.Join(h, ".postern")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Env{
		Stdout: os.Stdout, Stderr: os.Stderr, Home: home, Getenv: os.Getenv, Now: time.Now,
	})
	stop()
	os.Exit(code)
}
