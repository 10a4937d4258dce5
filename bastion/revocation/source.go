package revocation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/postern-dev/postern/internal/api"
)

// maxKRLBytes bounds a KRL read from a source. postern's lists are a few
// kilobytes; this leaves room for years of serials.
const maxKRLBytes = 16 << 20

// Fetched is one answer of a [Source].
type Fetched struct {
	// NotModified: the list has not changed since the tag asked about;
	// Data is empty.
	NotModified bool
	// Data is the binary KRL.
	Data []byte
	// Tag identifies this version for the next Fetch (an HTTP ETag, or the
	// file's identity and modification time).
	Tag string
	// Generation is what the source claims the KRL's version is, 0 when it
	// does not say. A KRL whose version differs is refused.
	Generation uint64
}

// Source delivers the current KRL.
type Source interface {
	// Fetch returns the KRL, or NotModified when it is still the one
	// tagged tag ("" asks unconditionally).
	Fetch(ctx context.Context, tag string) (Fetched, error)
	// String names the source in logs.
	String() string
}

// HTTPSource fetches GET /v1/krl from the signer.
type HTTPSource struct {
	// URL is the KRL's full URL (base + api.PathKRL).
	URL string
	// CAFile, when set, pins the signer's TLS certificate: it must chain to
	// the certificates in this PEM file and to nothing else. Empty: the
	// system roots. It is read at the first fetch (and again after a
	// failure), so a bastion can start before the file is installed.
	CAFile string
	// Timeout bounds one request.
	Timeout time.Duration

	mu     sync.Mutex
	client *http.Client
}

// NewHTTPSource returns a source for the signer at baseURL.
func NewHTTPSource(baseURL, caFile string, timeout time.Duration) *HTTPSource {
	return &HTTPSource{URL: strings.TrimRight(baseURL, "/") + api.PathKRL, CAFile: caFile, Timeout: timeout}
}

// httpClient builds the pinned client once.
func (s *HTTPSource) httpClient() (*http.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the signer is reached directly
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read signer CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read signer CA %s: no PEM certificates", s.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	s.client = &http.Client{Transport: tr, Timeout: s.Timeout}
	return s.client, nil
}

func (s *HTTPSource) String() string { return s.URL }

// Fetch asks the signer, with If-None-Match when tag is set.
func (s *HTTPSource) Fetch(ctx context.Context, tag string) (Fetched, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return Fetched{}, fmt.Errorf("fetch KRL: %w", err)
	}
	if tag != "" {
		req.Header.Set("If-None-Match", tag)
	}
	client, err := s.httpClient()
	if err != nil {
		return Fetched{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return Fetched{}, fmt.Errorf("fetch KRL: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return Fetched{NotModified: true, Tag: tag}, nil
	case http.StatusOK:
	default:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return Fetched{}, fmt.Errorf("fetch KRL from %s: %s", s.URL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxKRLBytes+1))
	if err != nil {
		return Fetched{}, fmt.Errorf("read KRL from %s: %w", s.URL, err)
	}
	if len(data) > maxKRLBytes {
		return Fetched{}, fmt.Errorf("read KRL from %s: larger than %d bytes", s.URL, maxKRLBytes)
	}
	f := Fetched{Data: data, Tag: resp.Header.Get("ETag")}
	if g := resp.Header.Get(api.HeaderKRLGeneration); g != "" {
		if f.Generation, err = strconv.ParseUint(g, 10, 64); err != nil {
			return Fetched{}, fmt.Errorf("fetch KRL from %s: bad %s header %q", s.URL, api.HeaderKRLGeneration, g)
		}
	}
	return f, nil
}

// FileSource reads a KRL file that something else keeps current (the
// refresh timer of docs/revocation.md, or configuration management). It is
// re-read when its identity, size or modification time changes; replace it
// atomically (write, then rename).
type FileSource struct {
	Path string
}

func (s *FileSource) String() string { return s.Path }

// Fetch stats the file and reads it when it changed.
func (s *FileSource) Fetch(_ context.Context, tag string) (Fetched, error) {
	fi, err := os.Stat(s.Path)
	if err != nil {
		return Fetched{}, fmt.Errorf("read KRL file: %w", err)
	}
	cur := fileTag(fi)
	if tag != "" && tag == cur {
		return Fetched{NotModified: true, Tag: tag}, nil
	}
	f, err := os.Open(s.Path)
	if err != nil {
		return Fetched{}, fmt.Errorf("read KRL file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKRLBytes+1))
	if err != nil {
		return Fetched{}, fmt.Errorf("read KRL file %s: %w", s.Path, err)
	}
	if len(data) > maxKRLBytes {
		return Fetched{}, fmt.Errorf("read KRL file %s: larger than %d bytes", s.Path, maxKRLBytes)
	}
	// Tag what was read: the file's state from the open descriptor.
	if fi, err = f.Stat(); err == nil {
		cur = fileTag(fi)
	}
	return Fetched{Data: data, Tag: cur}, nil
}

func fileTag(fi os.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%d-%d-%d", ino, fi.Size(), fi.ModTime().UnixNano())
}

// errGoingBack is returned for a list older than the one held.
var errGoingBack = errors.New("older than the list in force")
