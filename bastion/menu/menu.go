package menu

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/postern-dev/postern/bastion/authz"
	"github.com/postern-dev/postern/internal/sshcert"
)

// Exit statuses.
const (
	ExitOK      = 0
	ExitFailed  = 1   // refused, not found, or the bastion failed
	ExitUsage   = 2   // a known command used wrongly
	ExitUnknown = 127 // no such command (as a shell says)
)

// Env is what the commands may show.
type Env struct {
	Identity    sshcert.Identity
	ClientAddr  string
	BastionID   string
	BastionName string // the ssh_config alias users type
	Now         time.Time
	// Rules are the node rules of the person's roles; UnknownRoles are
	// roles in the certificate the bastion does not know.
	Rules        []authz.Rule
	UnknownRoles []string
	// Reachable lists the inventory nodes the roles allow.
	Reachable []authz.Reach
	// Recordings serves the recordings and play commands for this
	// person; nil when the bastion has no store of recordings.
	Recordings Recordings
}

// Stdio is a command's session: its input, its output and whether the
// client asked for a terminal.
type Stdio struct {
	// In is the session's input; only play reads it, and only on a
	// terminal (Ctrl-C or q stops the playback). May be nil.
	In       io.Reader
	Out, Err io.Writer
	Terminal bool
}

type command struct {
	name, args, summary string
	run                 func(ctx context.Context, args []string, s Stdio, e Env) int
}

var commands = []command{
	{"whoami", "", "who you are to this bastion: person, roles, certificate serial and expiry", noArgs(whoami)},
	{"nodes", "", "the nodes and node rules your roles allow", noArgs(nodes)},
	{"recordings", "[--days N] [--limit N]", "recent recorded sessions you may view", listRecordings},
	{"play", "SESSION_ID [--speed N] [--idle-limit D]", "replay a recorded session in your terminal", play},
	{"help", "", "this list", nil}, // Help; set in init to avoid a cycle
}

func init() { commands[len(commands)-1].run = noArgs(Help) }

// noArgs adapts a command that takes no arguments.
func noArgs(f func(w io.Writer, e Env)) func(context.Context, []string, Stdio, Env) int {
	return func(_ context.Context, args []string, s Stdio, e Env) int {
		if len(args) > 0 {
			return ExitUsage
		}
		f(s.Out, e)
		return ExitOK
	}
}

// Run executes the command line cmd (an exec request's command) and
// returns the exit status. Output goes to stdout, refusals to stderr.
func Run(cmd string, stdout, stderr io.Writer, e Env) int {
	return RunContext(context.Background(), cmd, Stdio{Out: stdout, Err: stderr}, e)
}

// RunContext is Run for commands that take time (play) or read input:
// they stop when ctx ends, and write to s as they go.
func RunContext(ctx context.Context, cmd string, s Stdio, e Env) int {
	args := strings.Fields(cmd)
	if len(args) == 0 {
		Help(s.Out, e)
		return ExitOK
	}
	name := args[0]
	if name == "--help" || name == "-h" {
		name = "help"
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		code := c.run(ctx, args[1:], s, e)
		if code == ExitUsage {
			if c.args == "" {
				fmt.Fprintf(s.Err, "postern-bastion: %s takes no arguments\n", c.name)
			} else {
				fmt.Fprintf(s.Err, "postern-bastion: usage: ssh %s %s %s\n", e.bastionName(), c.name, c.args)
			}
		}
		return code
	}
	fmt.Fprintf(s.Err, "postern-bastion: unknown command %s: this bastion runs no shell and no programs\n", quote(name))
	fmt.Fprintf(s.Err, "postern-bastion: hint: ssh %s help lists the commands; ssh -J %s NODE reaches a node\n", e.bastionName(), e.bastionName())
	return ExitUnknown
}

// Streams reports whether cmd is a command that should write to the
// session as it goes (play) rather than all at once.
func Streams(cmd string) bool {
	args := strings.Fields(cmd)
	return len(args) > 0 && (args[0] == "play" || args[0] == "recordings")
}

// Shell is what an interactive login gets: a note and the help.
func Shell(w io.Writer, e Env) {
	fmt.Fprintf(w, "postern-bastion %s: there is no shell here.\n\n", e.BastionID)
	Help(w, e)
}

// Help lists the commands.
func Help(w io.Writer, e Env) {
	n := e.bastionName()
	fmt.Fprintf(w, "Reach a node through this bastion:\n  ssh -J %s NODE\n  scp -J %s FILE NODE:PATH\n  sftp -J %s NODE\n\n", n, n, n)
	fmt.Fprintf(w, "Commands (ssh %s COMMAND):\n", n)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	tw.Flush()
}

func whoami(w io.Writer, e Env) {
	id := e.Identity
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "person:\t%s\n", quote(id.KeyID))
	fmt.Fprintf(tw, "roles:\t%s\n", list(id.Roles))
	if len(e.UnknownRoles) > 0 {
		fmt.Fprintf(tw, "roles unknown here:\t%s (they grant nothing on this bastion)\n", list(e.UnknownRoles))
	}
	fmt.Fprintf(tw, "logins:\t%s\n", list(id.Principals))
	fmt.Fprintf(tw, "certificate serial:\t%d\n", id.Serial)
	left := id.ValidBefore.Sub(e.Now).Truncate(time.Second)
	fmt.Fprintf(tw, "valid until:\t%s (%s left)\n", id.ValidBefore.UTC().Format(time.RFC3339), left)
	fmt.Fprintf(tw, "from:\t%s\n", e.ClientAddr)
	fmt.Fprintf(tw, "bastion:\t%s\n", e.BastionID)
	tw.Flush()
}

func nodes(w io.Writer, e Env) {
	if len(e.Rules) == 0 {
		fmt.Fprintln(w, "Your roles allow no nodes on this bastion.")
		if len(e.UnknownRoles) > 0 {
			fmt.Fprintf(w, "Roles in your certificate that this bastion does not know: %s\n", list(e.UnknownRoles))
		}
		return
	}
	if len(e.Reachable) > 0 {
		fmt.Fprintln(w, "Nodes in the inventory you may reach:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tADDRESS\tPORTS\tALLOWED BY")
		for _, r := range e.Reachable {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.Node.Name, r.Node.Addr, r.Ports, r.ByRule)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "Node rules of your roles:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range e.Rules {
		fmt.Fprintf(tw, "  %s\t%s\n", r.Role, r.Raw)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nLoopback, link-local, metadata and the bastion's own addresses are refused unless a rule names them.")
}

func (e Env) bastionName() string {
	if e.BastionName == "" {
		return "BASTION"
	}
	return e.BastionName
}

func list(v []string) string {
	if len(v) == 0 {
		return "(none)"
	}
	q := make([]string, len(v))
	for i, s := range v {
		q[i] = quote(s)
	}
	return strings.Join(q, ", ")
}

// quote returns s unchanged when it is plain printable ASCII, else Go-quoted.
func quote(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\' {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}
