// Package revocation is the signer's revocation list: who and what is
// revoked, kept in a [Store] (a JSON file in the data directory,
// [FileStore], or change objects in an S3 bucket shared by several
// signers, [ObjectStore]; [Open] picks one from the configuration), and
// published as an OpenSSH KRL ([List.KRL]) and as JSON.
//
// # What an entry means
//
//   - serial: one certificate of a CA. It expires anyway; the entry keeps
//     refusing it until then (and after, harmlessly).
//   - key_id: the person. OpenSSH revokes every certificate with that key
//     ID, including any issued later, so the signer refuses to issue one
//     ([List.Refuses]) and bastions and nodes refuse the old ones. The
//     entry stays until an admin removes it (revoke --undo), e.g. for a
//     person who returns.
//   - key: a plain public key and every certificate for it.
//
// # Invariants
//
//   - Every change increments the generation by exactly one (an
//     ObjectStore import by the generation it imported), and the KRL's
//     version is the generation, so readers can tell newer from older.
//   - FileStore: changes are read-modify-write under an exclusive lock, and
//     the file is replaced atomically (write to a temporary file, fsync,
//     rename, fsync the directory): a reader sees the old list or the new
//     one, never a torn one, and a crash loses no acknowledged revocation.
//   - ObjectStore: every change is a new object that is never replaced;
//     concurrent changes from several signers are all kept, and the
//     generation (the number of changes) never goes down. See its
//     documentation for ordering and outages.
//   - A list that cannot be read or is invalid is an error, never an empty
//     list: issuance then fails closed and the KRL endpoint serves an error,
//     so nodes keep their last good KRL. (An ObjectStore that cannot reach
//     its bucket serves the last list it read, which is never emptier.)
//   - The same list always gives the same KRL bytes (the KRL's date is the
//     list's last change), so signers agree on ETags.
package revocation
