// Command postern-testidp runs the test OpenID Provider of package testidp
// for the demo. It listens on loopback only and MUST NOT be used as a real
// identity provider.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/postern-dev/postern/internal/testidp"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	if len(os.Args) > 1 && os.Args[1] == "approve" {
		if err := approve(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "postern-testidp: error: %v\n", err)
			os.Exit(1)
		}
		return
	}
	var (
		addr, usersFile, clientID, secretFile string
		redirects                             listFlag
	)
	flag.StringVar(&addr, "addr", "127.0.0.1:5556", "loopback `address` to listen on")
	flag.StringVar(&usersFile, "users", "", "TOML `file` with [[user]] username, password, email, groups (default: alice, bob, carol)")
	flag.StringVar(&clientID, "client-id", "postern", "OAuth client `id`")
	flag.StringVar(&secretFile, "client-secret-file", "", "`file` holding the client secret (required)")
	flag.Var(&redirects, "redirect-uri", "registered redirect `URL` (repeatable)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: postern-testidp --client-secret-file FILE [flags]\n       postern-testidp approve --user NAME --password PW VERIFICATION_URI USER_CODE\n\nA loopback-only OpenID Provider for tests and the demo. approve plays the\nperson at a browser: it signs in and approves a device login.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, addr, usersFile, clientID, secretFile, redirects); err != nil {
		fmt.Fprintf(os.Stderr, "postern-testidp: error: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, usersFile, clientID, secretFile string, redirects []string) error {
	if secretFile == "" {
		return errors.New("--client-secret-file is required")
	}
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		return fmt.Errorf("read client secret: %w", err)
	}
	if strings.TrimSpace(string(secret)) == "" {
		return fmt.Errorf("read client secret: %s is empty", secretFile)
	}
	users, err := loadUsers(usersFile)
	if err != nil {
		return err
	}
	idp, err := testidp.Start(ctx, testidp.Config{
		Addr:    addr,
		Users:   users,
		Clients: []testidp.Client{{ID: clientID, Secret: strings.TrimSpace(string(secret)), RedirectURIs: redirects}},
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	fmt.Printf("postern-testidp: issuer %s\n", idp.Issuer())
	<-ctx.Done()
	return idp.Close()
}

// loadUsers reads the users file, or returns the demo users when path is "".
func loadUsers(path string) ([]testidp.User, error) {
	if path == "" {
		return []testidp.User{
			{Username: "alice", Password: "alice", Email: "alice@example.com", Groups: []string{"infra", "dev"}},
			{Username: "bob", Password: "bob", Email: "bob@example.com", Groups: []string{"dev"}},
			{Username: "carol", Password: "carol", Email: "carol@example.com"},
		}, nil
	}
	var file struct {
		User []struct {
			Username, Password, Email string
			Groups                    []string
		} `toml:"user"`
	}
	md, err := toml.DecodeFile(path, &file)
	if err != nil {
		return nil, fmt.Errorf("parse users file %s: %w", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		return nil, fmt.Errorf("parse users file %s: unknown keys %v", path, undecoded)
	}
	users := make([]testidp.User, 0, len(file.User))
	for _, u := range file.User {
		users = append(users, testidp.User{Username: u.Username, Password: u.Password, Email: u.Email, Groups: u.Groups})
	}
	return users, nil
}

// approve signs in at the IdP's device page and approves a user code, for
// machines without a browser (the demo on a headless host).
func approve(args []string) error {
	fs := flag.NewFlagSet("postern-testidp approve", flag.ContinueOnError)
	user := fs.String("user", "alice", "user `name` to sign in as")
	pass := fs.String("password", "", "the user's `password` (default: same as the name, as for the demo users)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("usage: postern-testidp approve [--user NAME] [--password PW] VERIFICATION_URI USER_CODE")
	}
	if *pass == "" {
		*pass = *user
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testidp.ApproveDevice(ctx, fs.Arg(0), fs.Arg(1), *user, *pass); err != nil {
		return err
	}
	fmt.Printf("approved %s for %s\n", fs.Arg(1), *user)
	return nil
}
