package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/internal/bastionauth"
	"github.com/postern-dev/postern/internal/sshcert"
	"github.com/postern-dev/postern/signer/ca"
)

// Recording mode: a bastion that terminates a person's connection logs in
// to the node with a delegated certificate, and shows the person a host
// certificate for the node's name. Both come from here, only to a bastion
// that proves itself with its host key (internal/bastionauth).

// readBastion reads a signed bastion request into v and authenticates it.
func (s *Server) readBastion(w http.ResponseWriter, r *http.Request, v any, env func() bastionauth.Envelope) (string, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "request too large", "")
		return "", false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "malformed request: "+err.Error(), "")
		return "", false
	}
	name, err := s.bastions.Verify(env(), body, r.Header.Get(bastionauth.Header))
	if err != nil {
		s.emit(r.Context(), audit.Event{Event: audit.AccessDenied, ClientAddr: clientAddr(r), Target: r.URL.Path, Reason: err.Error()})
		writeErr(w, http.StatusUnauthorized, err.Error(), "")
		return "", false
	}
	return name, true
}

func (s *Server) handleDelegate(w http.ResponseWriter, r *http.Request) {
	var req api.DelegateRequest
	bastion, ok := s.readBastion(w, r, &req, func() bastionauth.Envelope {
		return bastionauth.Envelope{BastionCert: req.BastionCert, Timestamp: req.Timestamp, Nonce: req.Nonce}
	})
	if !ok {
		return
	}
	ev := audit.Event{Event: audit.CertRefused, Method: "delegated via " + bastion, ClientAddr: clientAddr(r), Login: req.Login, Target: req.Node, SessionID: req.SessionID}
	refuse := func(status int, err error) {
		ev.Reason = err.Error()
		s.emit(r.Context(), ev)
		writeErr(w, status, err.Error(), "")
	}
	person, err := s.checkPersonCert(r, req.PersonCert)
	if person != nil {
		id := sshcert.IdentityOf(person)
		ev.Person, ev.Roles, ev.Serial = id.KeyID, id.Roles, person.Serial
	}
	if err != nil {
		refuse(http.StatusForbidden, err)
		return
	}
	if !slices.Contains(person.ValidPrincipals, req.Login) {
		refuse(http.StatusForbidden, fmt.Errorf("login %q is not among the certificate's principals", req.Login))
		return
	}
	pub, err := parseUserKey(req.PublicKey)
	if err != nil {
		refuse(http.StatusBadRequest, err)
		return
	}
	ext := map[string]string{sshcert.ExtViaBastion: bastion}
	for k, v := range person.Extensions {
		ext[k] = v
	}
	// Never longer than the person's own certificate.
	ttl := s.cfg.Signer.DelegatedTTL.Duration
	if left := time.Unix(int64(person.ValidBefore), 0).Sub(s.now()); left < ttl {
		ttl = left
	}
	cert, err := s.userCA.SignUser(ca.UserCert{Key: pub, KeyID: person.KeyId, Principals: []string{req.Login}, TTL: ttl, Extensions: ext})
	if err != nil {
		refuse(http.StatusInternalServerError, err)
		return
	}
	va, vb := time.Unix(int64(cert.ValidAfter), 0).UTC(), time.Unix(int64(cert.ValidBefore), 0).UTC()
	ev.Event, ev.Reason, ev.Serial, ev.KeyFP, ev.Principals, ev.ValidAfter, ev.ValidBefore =
		audit.CertDelegated, fmt.Sprintf("for serial %d", person.Serial), cert.Serial, sshcert.Fingerprint(pub), cert.ValidPrincipals, &va, &vb
	if err := s.audit.Emit(r.Context(), ev); err != nil {
		writeErr(w, http.StatusInternalServerError, "the signer cannot write its audit log", "")
		return
	}
	writeJSON(w, http.StatusOK, api.CertResponse{Certificate: authorizedKey(cert)})
}

// checkPersonCert accepts only a user certificate from the user CA, valid
// now and not revoked.
func (s *Server) checkPersonCert(r *http.Request, line string) (*ssh.Certificate, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, fmt.Errorf("parse person certificate: %w", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok || cert.CertType != ssh.UserCert {
		return nil, errors.New("a person's user certificate is required")
	}
	if !bytes.Equal(cert.SignatureKey.Marshal(), s.userCA.PublicKey().Marshal()) {
		return cert, errors.New("the person's certificate is not from the user CA")
	}
	if len(cert.ValidPrincipals) == 0 {
		return cert, errors.New("the person's certificate names no principals")
	}
	checker := ssh.CertChecker{Clock: s.now, SupportedCriticalOptions: sshcert.KnownCriticalOptions}
	if err := s.sigs.CheckCert(&checker, cert.ValidPrincipals[0], cert); err != nil {
		return cert, fmt.Errorf("the person's certificate is not valid: %w", err)
	}
	snap, err := s.revs.Current(r.Context())
	if err != nil {
		return cert, fmt.Errorf("the signer cannot read its revocation list: %w", err)
	}
	if err := snap.Checker.Check(cert); err != nil {
		return cert, err
	}
	return cert, nil
}

func (s *Server) handleNodeHostCert(w http.ResponseWriter, r *http.Request) {
	var req api.NodeHostCertRequest
	bastion, ok := s.readBastion(w, r, &req, func() bastionauth.Envelope {
		return bastionauth.Envelope{BastionCert: req.BastionCert, Timestamp: req.Timestamp, Nonce: req.Nonce}
	})
	if !ok {
		return
	}
	ev := audit.Event{Event: audit.HostCertRefused, Method: "node name for " + bastion, ClientAddr: clientAddr(r), Principals: req.Hosts}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err == nil {
		if _, isCert := pub.(*ssh.Certificate); isCert {
			err = errors.New("a certificate is not a host key")
		}
	}
	if err == nil {
		for _, h := range req.Hosts {
			if h == "" || strings.ContainsAny(h, " ,*?[]") {
				err = fmt.Errorf("bad host name %q", h)
			}
		}
	}
	if err == nil && len(req.Hosts) == 0 {
		err = errors.New("no host names requested")
	}
	if err != nil {
		ev.Reason = err.Error()
		s.emit(r.Context(), ev)
		writeErr(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	cert, err := s.hostCA.SignHost(pub, req.Hosts, s.cfg.Signer.NodeHostCertTTL.Duration)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error(), "")
		return
	}
	ev.Event, ev.Serial, ev.KeyFP = audit.HostCertIssued, cert.Serial, sshcert.Fingerprint(pub)
	if err := s.audit.Emit(r.Context(), ev); err != nil {
		writeErr(w, http.StatusInternalServerError, "the signer cannot write its audit log", "")
		return
	}
	writeJSON(w, http.StatusOK, api.CertResponse{Certificate: authorizedKey(cert)})
}
