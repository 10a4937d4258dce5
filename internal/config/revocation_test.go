package config

import (
	"strings"
	"testing"
)

func TestRevocationKeys(t *testing.T) {
	c, err := Parse("t.toml", []byte("[signer]\ndata_dir = \"/srv/signer\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Signer.RevocationFile != "/srv/signer/revocations.json" || c.Signer.AdminTokenFile != "" {
		t.Fatalf("defaults: revocation_file %q admin_token_file %q", c.Signer.RevocationFile, c.Signer.AdminTokenFile)
	}
	c, err = Parse("t.toml", []byte("[signer]\nrevocation_file = \"/x/r.json\"\nadmin_token_file = \"/x/admins\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Signer.RevocationFile != "/x/r.json" || c.Signer.AdminTokenFile != "/x/admins" {
		t.Fatalf("set: %+v", c.Signer)
	}
	if _, err := Parse("t.toml", []byte("[signer]\nrevocation_fle = \"x\"\n")); err == nil || !strings.Contains(err.Error(), "t.toml:2: signer.revocation_fle: unknown key") {
		t.Fatalf("misspelt key: %v", err)
	}
}
