// Package menu is what a person gets who connects to the bastion itself
// (ssh bastion COMMAND) instead of jumping through it: a handful of
// read-only commands about their own access. There is no shell.
//
// # Security invariants
//
//   - Commands are split on white space and matched exactly; nothing is
//     passed to a shell or to another program.
//   - Every command only reads the caller's own identity and policy; none
//     changes state or shows another person's data.
//   - Anything not recognised is refused with a non-zero exit status, and
//     the echoed input is quoted so control characters never reach the
//     client's terminal raw.
package menu
