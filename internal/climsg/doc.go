// Package climsg prints a command's failure the way every postern binary
// does: "PROG: error: what went wrong", then, when there is advice,
// "PROG: hint: what to do" — lowercase, no trailing period, one line each.
package climsg
