package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/auditlog"
	"github.com/postern-dev/postern/internal/climsg"
	"github.com/postern-dev/postern/internal/config"
	"github.com/postern-dev/postern/internal/storage"
)

const auditUsage = `Usage:
  postern-bastion audit verify --pubkey FILE [--strict] [S3 FLAGS] LOG…
      check every writer's hash chain and signed checkpoints; one line per
      finding, exit status 1 on any problem
  postern-bastion audit search [--user P] [--event E,…] [--node N]
      [--since T] [--until T] [--format json|table] [--config FILE]
      [S3 FLAGS] [LOG…]
      print the matching events
  postern-bastion audit pubkey [--config FILE | --key FILE]
      print this bastion's audit public key (what auditors pass to --pubkey)

LOG is a JSON-lines audit file, or s3://BUCKET/PREFIX: every log shipped
under that prefix (the S3 sink's batches, read in order, one log at a time).
--pubkey may be given several times, or name a file of several keys (one
per writer). T is RFC 3339, a date (2006-01-02) or a duration back from now
(24h).

S3 FLAGS: --config FILE takes the endpoint, region, addressing and
credentials settings of its [storage] section; --s3-endpoint URL,
--s3-region R, --s3-path-style, --s3-profile P and --s3-credentials-file
FILE set or override them. Without either, the AWS SDK's defaults apply
(environment, ~/.aws, instance role). Documentation: docs/audit.md.
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

// s3Flags are the S3 settings of verify and search.
type s3Flags struct {
	cfgPath, endpoint, region, profile, credentials *string
	pathStyle                                       *bool
	cfg                                             *config.Config // loaded from cfgPath
}

func addS3Flags(fs *flag.FlagSet, cfgPath *string) *s3Flags {
	return &s3Flags{
		cfgPath:     cfgPath,
		endpoint:    fs.String("s3-endpoint", "", "S3 endpoint `URL` (S3-compatible servers)"),
		region:      fs.String("s3-region", "", "S3 `REGION`"),
		pathStyle:   fs.Bool("s3-path-style", false, "address buckets as ENDPOINT/BUCKET"),
		profile:     fs.String("s3-profile", "", "AWS shared-config `PROFILE`"),
		credentials: fs.String("s3-credentials-file", "", "AWS shared credentials `FILE`"),
	}
}

func (f *s3Flags) config() (*config.Config, error) {
	if f.cfg == nil && *f.cfgPath != "" {
		cfg, err := config.Load(*f.cfgPath)
		if err != nil {
			return nil, err
		}
		f.cfg = cfg
	}
	return f.cfg, nil
}

// store returns a store for the bucket of u, keys relative to the bucket.
func (f *s3Flags) store(ctx context.Context, u auditlog.S3URL) (storage.Store, error) {
	var sc storage.S3Config
	cfg, err := f.config()
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		sc = storage.S3ConfigFor(cfg.Storage)
	}
	sc.Bucket, sc.Prefix = u.Bucket, ""
	for _, o := range []struct {
		v   string
		dst *string
	}{{*f.endpoint, &sc.Endpoint}, {*f.region, &sc.Region}, {*f.profile, &sc.Profile}, {*f.credentials, &sc.CredentialsFile}} {
		if o.v != "" {
			*o.dst = o.v
		}
	}
	if *f.pathStyle {
		sc.PathStyle = true
	}
	return storage.NewS3(ctx, sc)
}

// s3Logs lists the logs under an s3:// URL, with clear errors.
func (f *s3Flags) s3Logs(ctx context.Context, name string) (storage.Store, []*auditlog.RemoteLog, error) {
	u, err := auditlog.ParseS3URL(name)
	if err != nil {
		return nil, nil, climsg.WithHint(err, "use s3://BUCKET/PREFIX, e.g. s3://postern/audit/ or s3://postern/audit/bastion/b1/")
	}
	st, err := f.store(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	logs, err := auditlog.ListLogs(ctx, st, u.Prefix)
	switch {
	case errors.Is(err, storage.ErrAccessDenied):
		return nil, nil, climsg.WithHint(err, "the credentials need s3:ListBucket and s3:GetObject on the bucket; pass --config, --s3-profile or --s3-credentials-file")
	case errors.Is(err, auditlog.ErrNoLogs):
		return nil, nil, climsg.WithHint(fmt.Errorf("%s: %w", u, err), "check the bucket and prefix: the batches are under [storage] s3_prefix + [audit] s3_prefix (default audit/), as WRITER/WRITER_ID/LOG_ID/OFFSET.jsonl")
	case err != nil:
		return nil, nil, climsg.WithHint(err, "check the credentials (--s3-profile, --s3-credentials-file, the AWS_* environment) and --s3-endpoint/--s3-region, or the [storage] section of --config")
	}
	return st, logs, nil
}

func isS3(name string) bool { return strings.HasPrefix(name, "s3://") }

func auditVerify(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	var pubkeys listFlag
	fs.Var(&pubkeys, "pubkey", "trusted audit public key `FILE`")
	strict := fs.Bool("strict", false, "treat notes (unsigned tail, incomplete last line) as problems")
	cfgPath := fs.String("config", "", "configuration `FILE` (its [storage] S3 settings, for s3:// logs)")
	s3f := addS3Flags(fs, cfgPath)
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
	v := verifyRun{stdout: stdout, opt: audit.VerifyOptions{Keys: keys}, strict: *strict}
	ctx := context.Background()
	for _, name := range files {
		if !isS3(name) {
			lines, n, err := v.log(name, func() (io.ReadCloser, error) { return os.Open(name) }, nil)
			if err != nil {
				return err
			}
			v.done(name, lines, n)
			continue
		}
		st, logs, err := s3f.s3Logs(ctx, name)
		if err != nil {
			return err
		}
		for _, l := range logs {
			if err := v.remote(ctx, st, name, l); err != nil {
				return err
			}
		}
	}
	if v.problems > 0 {
		return fmt.Errorf("audit verify: %d problem(s)", v.problems)
	}
	return nil
}

// verifyRun verifies logs one after the other and prints the findings.
type verifyRun struct {
	stdout   io.Writer
	opt      audit.VerifyOptions
	strict   bool
	problems int
}

// log verifies one log and prints its findings and chains; where, when
// set, adds where a line is stored. It returns the log's lines and
// problems.
func (v *verifyRun) log(name string, open func() (io.ReadCloser, error), where func(line int) string) (lines, problems int, err error) {
	r, err := audit.Verify(open, v.opt)
	if err != nil {
		return 0, 0, fmt.Errorf("verify %s: %w", name, err)
	}
	for _, f := range r.Findings {
		extra := ""
		if where != nil && f.Line > 0 {
			extra = where(f.Line)
		}
		fmt.Fprintf(v.stdout, "%s: %s%s\n", name, f, extra)
	}
	if r.Dropped > 0 {
		fmt.Fprintf(v.stdout, "%s: %d more finding(s) left out\n", name, r.Dropped)
	}
	for _, c := range r.Chains {
		state := "not closed"
		if c.Closed {
			state = "closed"
		}
		fmt.Fprintf(v.stdout, "%s: %s: seq %d..%d, %d event(s), %d valid checkpoint(s), signed through seq %d, %s\n",
			name, c.Chain, c.First, c.Last, c.Events, c.Checkpoints, c.SignedTo, state)
	}
	return r.Lines, len(r.Problems(v.strict)) + r.Dropped, nil
}

// done counts a log's problems and prints "ok" when there were none.
func (v *verifyRun) done(name string, lines, problems int) {
	if problems == 0 {
		fmt.Fprintf(v.stdout, "%s: ok (%d lines)\n", name, lines)
	}
	v.problems += problems
}

// remote verifies one log of an S3 prefix: its batches must follow each
// other without gap (a removed batch is a problem, and the verifier names
// the events it held as removed), and its lines verify as the file's.
func (v *verifyRun) remote(ctx context.Context, st storage.Store, url string, l *auditlog.RemoteLog) error {
	u, _ := auditlog.ParseS3URL(url)
	name := "s3://" + u.Bucket + "/" + l.Dir
	problems := 0
	for _, g := range l.Gaps() {
		if g.Overlap {
			fmt.Fprintf(v.stdout, "%s: batch %s: inserted: it starts at byte %d, inside the batch before (which ends at %d); no shipper writes that\n", name, path.Base(g.Next), g.To, g.From)
		} else {
			fmt.Fprintf(v.stdout, "%s: bytes %d..%d: removed: no batch holds them (the next batch is %s): a batch was deleted from the bucket\n", name, g.From, g.To-1, path.Base(g.Next))
		}
		problems++
	}
	where := func(line int) string {
		if key, n, ok := l.Locate(line); ok {
			return fmt.Sprintf(" (batch %s line %d)", path.Base(key), n)
		}
		return ""
	}
	lines, n, err := v.log(name, func() (io.ReadCloser, error) { return l.Open(ctx, st), nil }, where)
	if err != nil {
		return err
	}
	for _, k := range l.Unterminated() {
		fmt.Fprintf(v.stdout, "%s: batch %s: changed: it does not end with a newline (the shipper stores whole lines only)\n", name, path.Base(k))
		problems++
	}
	v.done(name, lines, problems+n)
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
	cfgPath := fs.String("config", "", "configuration `FILE` (its [bastion] audit_log when no LOG is given; its [storage] S3 settings)")
	s3f := addS3Flags(fs, cfgPath)
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
		cfg, err := s3f.config()
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
	search := func(name string, r io.Reader) error {
		bad := 0
		err := audit.Scan(r, func(n int, line []byte, e *audit.Event, err error) error {
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
		if err != nil {
			return fmt.Errorf("search %s: %w", name, err)
		}
		if bad > 0 {
			fmt.Fprintf(stderr, "postern-bastion: warning: %s: %d line(s) are not events; run audit verify\n", name, bad)
		}
		return nil
	}
	ctx := context.Background()
	for _, name := range files {
		if !isS3(name) {
			f, err := os.Open(name)
			if err != nil {
				return fmt.Errorf("open audit log: %w", err)
			}
			err = search(name, f)
			f.Close()
			if err != nil {
				return err
			}
			continue
		}
		st, logs, err := s3f.s3Logs(ctx, name)
		if err != nil {
			return err
		}
		for _, l := range logs {
			u, _ := auditlog.ParseS3URL(name)
			rc := l.Open(ctx, st)
			err := search("s3://"+u.Bucket+"/"+l.Dir, rc)
			rc.Close()
			if err != nil {
				return err
			}
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
	cfgPath := fs.String("config", "", "configuration `FILE` (the key is [audit] key_file, default [bastion] data_dir/audit_key)")
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
		*keyFile = cfg.AuditKeyFile(cfg.Bastion.DataDir)
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
