package auditlog

import (
	"fmt"
	"strconv"
	"strings"
)

// The object layout in the store:
//
//	PREFIX WRITER/WRITER_ID/LOG_ID/OFFSET.jsonl
//
// PREFIX is [audit] s3_prefix (inside [storage] s3_prefix); WRITER and
// WRITER_ID are escaped to be safe key segments; LOG_ID names one log file
// from its first byte (time-sortable); OFFSET is the byte offset in that
// file of the batch's first line, zero-padded to 20 digits, so that a plain
// listing is in log order and two batches never share a key.

const offsetDigits = 20

// objectKey is the key of the batch of the log in logDir ("…/LOG_ID/")
// that starts at off.
func objectKey(logDir string, off int64) string {
	return fmt.Sprintf("%s%0*d.jsonl", logDir, offsetDigits, off)
}

// logDir is the key directory of one log.
func logDir(prefix, writer, writerID, logID string) string {
	return prefix + escapeSegment(writer) + "/" + escapeSegment(writerID) + "/" + logID + "/"
}

// parseObjectKey splits the key of an audit batch into its log directory
// (ending in "LOG_ID/") and offset. Keys come from a bucket listing, so
// anything else is refused (ok false).
func parseObjectKey(key string) (dir string, off int64, ok bool) {
	i := strings.LastIndexByte(key, '/')
	if i < 0 {
		return "", 0, false
	}
	dir, base := key[:i+1], key[i+1:]
	num, found := strings.CutSuffix(base, ".jsonl")
	if !found || len(num) != offsetDigits {
		return "", 0, false
	}
	for _, c := range []byte(num) {
		if c < '0' || c > '9' {
			return "", 0, false
		}
	}
	off, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return "", 0, false
	}
	j := strings.LastIndexByte(dir[:i], '/')
	if !reLogID.MatchString(dir[j+1 : i]) {
		return "", 0, false
	}
	return dir, off, true
}

// escapeSegment makes s one safe key segment: letters, digits and "-_.@"
// stay, anything else (and a leading ".") becomes %XX; "" becomes "_".
func escapeSegment(s string) string {
	if s == "" {
		return "_"
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '@' || (c == '.' && i > 0)
		if ok {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
