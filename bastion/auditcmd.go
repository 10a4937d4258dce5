package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/climsg"
	"github.com/postern-dev/postern/internal/config"
)

const auditUsage = `Usage:
  postern-bastion audit verify --pubkey FILE [--strict] LOG…
      check every writer's hash chain and signed checkpoints; one line per
      finding, exit status 1 on any problem
  postern-bastion audit search [--user P] [--event E,…] [--node N]
      [--since T] [--until T] [--format json|table] [--config FILE] [LOG…]
      print the matching events
  postern-bastion audit pubkey [--config FILE | --key FILE]
      print this bastion's audit public key (what auditors pass to --pubkey)

LOG is a JSON-lines audit file. --pubkey may be given several times, or name
a file of several keys (one per writer). T is RFC 3339, a date (2006-01-02)
or a duration back from now (24h). Documentation: docs/audit.md.
`

// auditCmd runs "postern-bastion audit …".
func auditCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		fmt.Fprint(stdout, auditUsage)
		return nil
	}
	switch args[0] {
	case "verify":
		return auditVerify(args[1:], stdout)
	case "search":
		return auditSearch(args[1:], stdout, stderr)
	case "pubkey":
		return auditPubkey(args[1:], stdout)
	}
	return climsg.WithHint(fmt.Errorf("unknown audit command %q", args[0]), "run postern-bastion audit help")
}

// parseAll parses flags that may come before, between or after the
// positional arguments, and returns those.
func parseAll(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, climsg.WithHint(errors.New("no help for flags here"), "run postern-bastion audit help")
			}
			return nil, climsg.WithHint(err, "run postern-bastion audit help")
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func checkLocal(name string) error {
	if strings.HasPrefix(name, "s3://") {
		// TODO(issue 6): read s3://bucket/prefix through internal/storage
		// once it is committed.
		return climsg.WithHint(fmt.Errorf("%s: s3:// not supported yet", name), "download the objects and pass the files")
	}
	return nil
}

func auditVerify(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	var pubkeys listFlag
	fs.Var(&pubkeys, "pubkey", "trusted audit public key `FILE`")
	strict := fs.Bool("strict", false, "treat notes (unsigned tail, incomplete last line) as problems")
	files, err := parseAll(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return climsg.WithHint(errors.New("no log given"), "postern-bastion audit verify --pubkey audit_key.pub /var/lib/postern/bastion/audit.log")
	}
	if len(pubkeys) == 0 {
		return climsg.WithHint(errors.New("no --pubkey given"), "pass the writers' audit public keys (data_dir/audit_key.pub, or postern-bastion audit pubkey)")
	}
	keys := audit.KeySet{}
	for _, p := range pubkeys {
		ks, err := audit.ReadPublicKeys(p)
		if err != nil {
			return err
		}
		for k, v := range ks {
			keys[k] = v
		}
	}
	problems := 0
	for _, name := range files {
		if err := checkLocal(name); err != nil {
			return err
		}
		r, err := audit.Verify(func() (io.ReadCloser, error) { return os.Open(name) }, audit.VerifyOptions{Keys: keys})
		if err != nil {
			return fmt.Errorf("verify %s: %w", name, err)
		}
		for _, f := range r.Findings {
			fmt.Fprintf(stdout, "%s: %s\n", name, f)
		}
		if r.Dropped > 0 {
			fmt.Fprintf(stdout, "%s: %d more finding(s) left out\n", name, r.Dropped)
		}
		for _, c := range r.Chains {
			state := "not closed"
			if c.Closed {
				state = "closed"
			}
			fmt.Fprintf(stdout, "%s: %s: seq %d..%d, %d event(s), %d valid checkpoint(s), signed through seq %d, %s\n",
				name, c.Chain, c.First, c.Last, c.Events, c.Checkpoints, c.SignedTo, state)
		}
		n := len(r.Problems(*strict)) + r.Dropped
		if n == 0 {
			fmt.Fprintf(stdout, "%s: ok (%d lines)\n", name, r.Lines)
		}
		problems += n
	}
	if problems > 0 {
		return fmt.Errorf("audit verify: %d problem(s)", problems)
	}
	return nil
}

// parseWhen reads RFC 3339, a date, or a duration back from now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("bad time %q", s)
}

// searchQuery is what audit search matches; empty fields match anything.
type searchQuery struct {
	users, events []string // glob patterns
	node          string
	since, until  time.Time
}

func globAny(pats []string, v string) bool {
	for _, p := range pats {
		if ok, _ := path.Match(p, v); ok || p == v {
			return true
		}
	}
	return false
}

func hostOf(hp string) string {
	if h, _, err := net.SplitHostPort(hp); err == nil {
		return h
	}
	return hp
}

func (q *searchQuery) match(e *audit.Event) bool {
	if len(q.events) > 0 {
		if !globAny(q.events, e.Event) {
			return false
		}
	} else if strings.HasPrefix(e.Event, "audit.") {
		return false // the log's own bookkeeping, unless asked for
	}
	if len(q.users) > 0 && !globAny(q.users, e.Person) {
		return false
	}
	if q.node != "" && e.Node != q.node && hostOf(e.Target) != q.node && hostOf(e.Resolved) != q.node {
		return false
	}
	if !q.since.IsZero() && e.Time.Before(q.since) {
		return false
	}
	if !q.until.IsZero() && !e.Time.Before(q.until) {
		return false
	}
	return true
}

func auditSearch(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit search", flag.ContinueOnError)
	var users, events listFlag
	fs.Var(&users, "user", "person (KeyId) `P`, a glob; may repeat")
	fs.Var(&events, "event", "event names `E,…`, globs such as session.*; may repeat")
	node := fs.String("node", "", "node name or target host `N`")
	since := fs.String("since", "", "events at or after `T`")
	until := fs.String("until", "", "events before `T`")
	format := fs.String("format", "json", "json (the lines as written) or table")
	cfgPath := fs.String("config", "", "configuration `FILE` (its [bastion] audit_log when no LOG is given)")
	files, err := parseAll(fs, args)
	if err != nil {
		return err
	}
	now := time.Now()
	q := searchQuery{users: users, node: *node}
	for _, e := range events {
		q.events = append(q.events, strings.Split(e, ",")...)
	}
	for _, w := range []struct {
		s string
		t *time.Time
	}{{*since, &q.since}, {*until, &q.until}} {
		if w.s == "" {
			continue
		}
		if *w.t, err = parseWhen(w.s, now); err != nil {
			return climsg.WithHint(err, "use RFC 3339 (2025-03-01T12:00:00Z), a date (2025-03-01) or a duration (24h)")
		}
	}
	if *format != "json" && *format != "table" {
		return climsg.WithHint(fmt.Errorf("bad --format %q", *format), "use json or table")
	}
	if len(files) == 0 {
		if *cfgPath == "" {
			return climsg.WithHint(errors.New("no log given"), "pass LOG files or --config FILE")
		}
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		files = []string{cfg.Bastion.AuditLog}
	}
	var tw *tabwriter.Writer
	if *format == "table" {
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tEVENT\tPERSON\tNODE/TARGET\tSESSION\tDETAIL")
	}
	for _, name := range files {
		if err := checkLocal(name); err != nil {
			return err
		}
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("open audit log: %w", err)
		}
		bad := 0
		err = audit.Scan(f, func(n int, line []byte, e *audit.Event, err error) error {
			if err != nil {
				bad++
				return nil
			}
			if !q.match(e) {
				return nil
			}
			if tw == nil {
				_, err = stdout.Write(line)
				return err
			}
			where := e.Node
			if where == "" {
				where = e.Target
			}
			detail := e.Command
			if e.Reason != "" {
				detail = strings.TrimSpace(detail + " " + e.Reason)
			}
			_, err = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), e.Event, e.Person, where, e.SessionID, oneLine(detail))
			return err
		})
		f.Close()
		if err != nil {
			return fmt.Errorf("search %s: %w", name, err)
		}
		if bad > 0 {
			fmt.Fprintf(stderr, "postern-bastion: warning: %s: %d line(s) are not events; run audit verify\n", name, bad)
		}
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func auditPubkey(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit pubkey", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration `FILE` (the key is [bastion] data_dir/audit_key)")
	keyFile := fs.String("key", "", "audit key `FILE`")
	if _, err := parseAll(fs, args); err != nil {
		return err
	}
	comment := "postern audit key"
	switch {
	case *keyFile != "":
	case *cfgPath != "":
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		*keyFile = auditKeyPath(cfg)
		comment += " bastion/" + cfg.Bastion.ID
	default:
		return climsg.WithHint(errors.New("no --config or --key given"), "postern-bastion audit pubkey --config /etc/postern/postern.toml")
	}
	k, err := audit.LoadKey(*keyFile)
	if errors.Is(err, os.ErrNotExist) {
		return climsg.WithHint(err, "the bastion creates its audit key when it starts")
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, audit.PublicKeyLine(k, comment))
	return nil
}

// auditKeyPath is where the bastion keeps the key that signs its audit
// checkpoints.
func auditKeyPath(cfg *config.Config) string {
	return filepath.Join(cfg.Bastion.DataDir, "audit_key")
}
