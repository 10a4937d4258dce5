// Package asciicast writes and reads terminal recordings in asciicast v2,
// the format asciinema plays: a JSON header line, then one JSON array per
// event: [seconds, "o"|"i"|"r"|"m", data].
//
// # Invariants
//
//   - Every line written is valid JSON, whatever bytes the session sends:
//     a UTF-8 sequence split across writes is held back until it is
//     complete, and invalid bytes become U+FFFD, so chunking never changes
//     what is recorded.
//   - Times are seconds since the header's start, never decreasing.
//   - The writer never blocks on anything but its io.Writer; the reader
//     bounds line length, so a hostile file cannot exhaust memory.
package asciicast
