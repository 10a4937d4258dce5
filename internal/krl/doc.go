// Package krl reads and writes OpenSSH key revocation lists (KRLs) in the
// binary format of OpenSSH's PROTOCOL.krl, the format sshd's RevokedKeys and
// `ssh-keygen -Q` read, and answers whether a key or certificate is revoked
// the way OpenSSH does.
//
// # What a KRL revokes
//
//   - Certificates of one CA, by serial number (lists, ranges, bitmaps) or
//     by key ID ([CertSection]). A section whose CA is nil applies to
//     certificates of any CA.
//   - Plain public keys, by their blob ([KRL.Keys]) or the SHA-1 / SHA-256
//     hash of the blob. A revoked plain key also revokes every certificate
//     made for it, and a revoked CA key every certificate it signed.
//
// # Invariants
//
//   - [KRL.Marshal] writes only what OpenSSH 6.2 and later parse (serial
//     lists, serial ranges, key IDs, explicit keys), plus SHA-256 sections
//     (OpenSSH 7.9 and later) only when the KRL holds such hashes. An sshd
//     that cannot parse its RevokedKeys file refuses every public key, so
//     the encoder refuses input OpenSSH would reject (serial 0, NUL bytes in
//     key IDs or the comment, certificates as plain keys) instead of writing
//     it. Sections with a nil CA (any CA) need a newer OpenSSH than the rest
//     (9.2 reads them); postern's signer always names its CA.
//   - Output is canonical: serials sorted and merged, key IDs and blobs
//     sorted and de-duplicated, sections in a fixed order. The same content
//     and generation always give the same bytes, so a hash of them is a
//     stable ETag.
//   - [Parse] accepts what OpenSSH's parser accepts and refuses what it
//     refuses, except signature sections, which it refuses (OpenSSH 9.4 and
//     later refuse them too). It never panics and bounds its work by the
//     input's size; it is fuzzed.
//   - [KRL.Check] mirrors OpenSSH's ssh_krl_check_key: hashes, then the
//     explicit key, then (for certificates) key ID and serial under the
//     certificate's CA and under wildcard sections, then the CA key itself.
//     Certificates with serial 0 are never revoked by serial.
package krl
