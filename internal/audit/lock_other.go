//go:build !unix

package audit

import "os"

// lockFile is a no-op where flock(2) does not exist: there, only one
// process may write a given log.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) error { return nil }
