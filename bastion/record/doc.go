// Package record turns what the bastion relays in recording mode into
// recordings and audit events: an asciicast v2 file for every terminal
// session (and for every exec, with its output bounded), one "sftp" event
// per file operation, one "port" event per forwarded connection and one
// "exec" event per command.
//
// # Invariants
//
//   - A recording is written to the sink (the spool) as the session runs,
//     never held whole in memory, and closed when the session ends.
//   - Output of sessions without a terminal is recorded up to ExecLimit
//     bytes per connection; beyond that it is counted, not stored, and the
//     truncation is marked in the recording and the event.
//   - Keyboard input is recorded only when RecordInput is set (it can
//     contain passwords typed at prompts).
//   - A failing sink never disturbs the session: the failure is logged and
//     reported in the session's events.
package record
