// Package agentkeys puts postern's key and certificate into the user's
// ssh-agent, finds them again, and takes them out.
//
// # Invariants
//
//   - A key is added with a lifetime equal to its certificate's remaining
//     validity, so the agent forgets it when it stops being useful.
//   - Only keys whose comment starts with sshcert.AgentCommentPrefix are
//     ever listed as postern's or removed.
package agentkeys
