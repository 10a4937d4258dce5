package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/internal/api"
	"github.com/postern-dev/postern/internal/audit"
	"github.com/postern-dev/postern/signer/revocation"
)

// revokedError is shown to a person whose key ID or key is revoked.
type revokedError struct{ error }

func (revokedError) Hint() string {
	return "your access was revoked; ask an administrator if you think this is a mistake"
}

// checkNotRevoked refuses issuance for a revoked key ID or key. A list that
// cannot be read refuses too (fail closed).
func (s *Server) checkNotRevoked(ctx context.Context, keyID string, pub ssh.PublicKey) error {
	snap, err := s.revs.Current(ctx)
	if err != nil {
		s.log.Error("revocation list unreadable; certificate withheld", "err", err)
		return fmt.Errorf("the signer cannot read its revocation list: %w", err)
	}
	if err := snap.List.Refuses(keyID, pub); err != nil {
		return revokedError{fmt.Errorf("access for %s has been revoked: %w", keyID, err)}
	}
	return nil
}

// adminToken checks the bearer token against signer.admin_token_file and
// returns the number of the matching token.
func (s *Server) adminToken(r *http.Request) (int, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return 0, false
	}
	return s.matchToken("admin token file", s.cfg.Signer.AdminTokenFile, token)
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) (*revocation.Snapshot, bool) {
	snap, err := s.revs.Current(r.Context())
	if err != nil {
		s.log.Error("read revocation list", "err", err)
		writeErr(w, http.StatusInternalServerError, "the signer cannot read its revocation list", "")
		return nil, false
	}
	return snap, true
}

// handleKRL serves the binary KRL. http.ServeContent answers If-None-Match
// (and HEAD and Range) from the ETag set here.
func (s *Server) handleKRL(w http.ResponseWriter, r *http.Request) {
	snap, ok := s.snapshot(w, r)
	if !ok {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", snap.ETag)
	h.Set("Cache-Control", "no-cache")
	h.Set(api.HeaderKRLGeneration, strconv.FormatUint(snap.List.Generation, 10))
	http.ServeContent(w, r, "postern.krl", time.Time{}, bytes.NewReader(snap.KRL))
}

// handleRevocations serves the list as JSON. Without credentials it leaves
// out reasons and who revoked; with a valid admin token it includes them;
// with an invalid one it refuses.
func (s *Server) handleRevocations(w http.ResponseWriter, r *http.Request) {
	full := false
	if r.Header.Get("Authorization") != "" {
		if _, ok := s.adminToken(r); !ok {
			s.emit(r.Context(), audit.Event{Event: audit.AccessDenied, ClientAddr: clientAddr(r), Target: api.PathRevocations, Reason: "unknown admin token"})
			writeErr(w, http.StatusUnauthorized, "admin token refused", "send no Authorization header for the public list")
			return
		}
		full = true
	}
	snap, ok := s.snapshot(w, r)
	if !ok {
		return
	}
	b, err := json.Marshal(snap.List.Wire(full))
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error(), "")
		return
	}
	etag := snap.ListETag
	if full {
		etag = strings.TrimSuffix(etag, `"`) + `-full"`
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("ETag", etag)
	h.Set("Vary", "Authorization")
	h.Set("Cache-Control", "no-cache")
	h.Set(api.HeaderKRLGeneration, strconv.FormatUint(snap.List.Generation, 10))
	http.ServeContent(w, r, "revocations.json", time.Time{}, bytes.NewReader(append(b, '\n')))
}

// handleRevoke adds or removes a revocation for an admin.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	client := clientAddr(r)
	n, ok := s.adminToken(r)
	if !ok {
		s.emit(r.Context(), audit.Event{Event: audit.AccessDenied, ClientAddr: client, Target: api.PathRevoke, Reason: "missing or unknown admin token"})
		writeErr(w, http.StatusUnauthorized, "admin token refused", "pass a token listed in the signer's admin_token_file")
		return
	}
	var req api.RevokeRequest
	if !readJSON(w, r, &req) {
		return
	}
	e, err := s.requestEntry(req)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error(), "set exactly one of key_id, serial and public_key, and a reason")
		return
	}
	now := s.now()
	e.Reason, e.By, e.Time = strings.TrimSpace(req.Reason), fmt.Sprintf("api token %d from %s", n, client), now.UTC().Truncate(time.Second)
	result, l, changed, err := revocation.Apply(r.Context(), s.revs.Store, e, req.Undo, now)
	switch {
	case errors.Is(err, revocation.ErrNotRevoked):
		writeErr(w, http.StatusNotFound, err.Error(), "")
		return
	case errors.Is(err, revocation.ErrInvalid):
		writeErr(w, http.StatusBadRequest, err.Error(), "")
		return
	case err != nil:
		s.log.Error("update revocation list", "err", err)
		writeErr(w, http.StatusInternalServerError, "the signer cannot update its revocation list", "")
		return
	}
	if changed {
		ev := EventFor(result, req.Undo)
		ev.ClientAddr, ev.Method, ev.Reason = client, e.By, e.Reason
		if err := s.audit.Emit(r.Context(), ev); err != nil {
			s.log.Error("audit write failed after a revocation change", "err", err, "target", result.Target())
			writeErr(w, http.StatusInternalServerError, "the change was made but the signer cannot write its audit log", "")
			return
		}
		s.log.Info("revocation list changed", "target", result.Target(), "undo", req.Undo, "generation", l.Generation, "by", e.By)
	}
	writeJSON(w, http.StatusOK, api.RevokeResponse{Generation: l.Generation, Changed: changed, Revocation: revocation.WireEntry(result)})
}

// requestEntry turns a request into an entry; serials and key IDs are of
// the signer's user CA.
func (s *Server) requestEntry(req api.RevokeRequest) (revocation.Entry, error) {
	set := 0
	for _, b := range []bool{req.KeyID != "", req.Serial != 0, req.PublicKey != ""} {
		if b {
			set++
		}
	}
	if set != 1 {
		return revocation.Entry{}, errors.New("name exactly one of key_id, serial and public_key")
	}
	if strings.TrimSpace(req.Reason) == "" {
		return revocation.Entry{}, errors.New("a reason is required")
	}
	ca := s.userCA.PublicKey()
	switch {
	case req.KeyID != "":
		if err := revocation.CheckKeyID(req.KeyID); err != nil {
			return revocation.Entry{}, err
		}
		return revocation.NewKeyID(ca, req.KeyID), nil
	case req.Serial != 0:
		return revocation.NewSerial(ca, req.Serial), nil
	default:
		pub, err := parseUserKey(req.PublicKey)
		if err != nil {
			return revocation.Entry{}, err
		}
		for _, own := range []ssh.PublicKey{s.userCA.PublicKey(), s.hostCA.PublicKey()} {
			if bytes.Equal(own.Marshal(), pub.Marshal()) {
				return revocation.Entry{}, errors.New("that is one of the signer's own CA keys: revoking it would refuse every certificate")
			}
		}
		return revocation.NewKey(pub), nil
	}
}

// EventFor is the audit event of a revocation change (cert.revoked or
// cert.unrevoked) naming what it applies to.
func EventFor(e revocation.Entry, undo bool) audit.Event {
	ev := audit.Event{Event: audit.CertRevoked, Person: e.KeyID, Serial: e.Serial, KeyFP: e.KeyFP, Target: e.Target()}
	if undo {
		ev.Event = audit.CertUnrevoked
	}
	return ev
}
