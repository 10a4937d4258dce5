package config

import (
	"net/url"
	"strings"
	"time"
)

// Values of [bastion] revocation.
const (
	RevocationSigner = "signer"
	RevocationFile   = "file"
	RevocationOff    = "off"
)

// validateRevocation checks the bastion's revocation keys.
func (c *Config) validateRevocation(add func(error)) {
	b := c.Bastion
	switch b.Revocation {
	case RevocationSigner:
		if u, err := url.Parse(b.SignerURL); err != nil || u.Scheme != "https" || u.Host == "" {
			add(c.errAt("bastion.signer_url", "must be an absolute https URL to poll the KRL, got %q (its integrity comes from TLS; or set revocation = \"file\" or \"off\")", b.SignerURL))
		}
		if b.KRLFile != "" {
			add(c.errAt("bastion.krl_file", "is not read with revocation = \"signer\""))
		}
	case RevocationFile:
		if b.KRLFile == "" {
			add(c.errAt("bastion.krl_file", "required with revocation = \"file\""))
		}
	case RevocationOff:
	default:
		add(c.errAt("bastion.revocation", "must be \"signer\", \"file\" or \"off\", got %q", b.Revocation))
	}
	if b.RevocationPoll.Duration < 100*time.Millisecond {
		add(c.errAt("bastion.revocation_poll", "must be at least 100ms, got %s", b.RevocationPoll.Duration))
	}
	if m := b.RevocationMaxStale.Duration; m > 0 {
		if m < 2*b.RevocationPoll.Duration {
			add(c.errAt("bastion.revocation_max_stale", "must be at least twice revocation_poll (%s), got %s", b.RevocationPoll.Duration, m))
		}
		if b.Revocation == RevocationOff {
			add(c.errAt("bastion.revocation_max_stale", "has no effect with revocation = \"off\""))
		}
	}
}

// defaultRevocation: the file when one is named, else the signer when it
// is reached over TLS, else off (a plain-HTTP signer cannot be trusted for
// the list).
func defaultRevocation(b *Bastion) string {
	switch {
	case b.KRLFile != "":
		return RevocationFile
	case strings.HasPrefix(b.SignerURL, "https://"):
		return RevocationSigner
	}
	return RevocationOff
}
