// Package recordings finds the session recordings kept in a
// storage.Store and decides who may see them: the listing behind
// `ssh BASTION recordings` and the lookup behind `ssh BASTION play ID`.
//
// Recordings are the asciicast files bastion/record writes, stored under
// recordings/YYYY/MM/DD/<session-id>-<n>.cast (the UTC date the recorded
// connection started; n numbers the sessions of one connection) with the
// object metadata session-id, person, node and login.
//
// # Who may see what
//
//   - A person always sees recordings of their own sessions: those whose
//     "person" metadata equals the KeyId of their certificate.
//   - A person holding a role with view_recordings = true (in the bastion's
//     configuration) sees every recording.
//   - Nothing else grants viewing: not a login, a node rule or a group.
//     Roles in the certificate that the bastion does not know grant
//     nothing.
//
// # Security invariants
//
//   - The decision is made per object from its stored metadata, for every
//     part of a session; a session with any part the viewer may not see
//     is refused whole.
//   - A recording without a "person" is nobody's own: only view_recordings
//     shows it.
//   - Session IDs from users are checked against a strict pattern before
//     they become part of a storage prefix.
//   - The package only reads the store.
//
// Playback replays what the node sent to the recorded terminal, escape
// sequences included, to the viewer's terminal, exactly as the person saw
// it live.
package recordings
