package version

// Version of this build; "dev" for builds without -ldflags.
var Version = "dev"
