// Package menu is what a person gets who connects to the bastion itself
// (ssh bastion COMMAND) instead of jumping through it: a handful of
// read-only commands about their own access, and the listing and playback
// of session recordings. There is no shell.
//
// # Security invariants
//
//   - Commands are split on white space and matched exactly; nothing is
//     passed to a shell or to another program.
//   - No command changes state. whoami and nodes read only the caller's
//     own identity and policy; recordings and play show only what
//     [Recordings] lets the caller see (bastion/recordings decides, the
//     server audits).
//   - Anything not recognised is refused with a non-zero exit status, and
//     the echoed input is quoted so control characters never reach the
//     client's terminal raw. Listings print recorded command lines with
//     control characters replaced; only play writes recorded output
//     as it was, which is its purpose.
package menu
