package testidp

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

// BrowserResult is where a scripted browser stopped.
type BrowserResult struct {
	FinalURL *url.URL // the redirect target stop accepted, or the URL of the last page
	Status   int      // status of the last response (a 3xx when stop accepted a redirect)
	Body     string   // body of the last page; empty when stopped at a redirect
}

const maxHops = 20

// BrowserLogin plays a person with a browser: starting from authURL (the
// IdP's /authorize with the relying party's parameters), it follows
// redirects with a cookie jar, fills and posts the IdP's login form once with
// username and password, and keeps following redirects. It stops when stop
// returns true for a redirect target, returning that URL without requesting
// it, or when a response is not a redirect, returning its URL, status and
// body. A wrong password therefore ends on the login form again, with status
// 401; an unregistered redirect URI ends on the IdP's error page. A nil stop
// follows every redirect.
func BrowserLogin(ctx context.Context, authURL, username, password string, stop func(*url.URL) bool) (*BrowserResult, error) {
	b := newBrowser()
	defer b.close()
	u, err := url.Parse(authURL)
	if err != nil {
		return nil, fmt.Errorf("parse authorization url: %w", err)
	}
	var form url.Values // nil: GET, else POST
	posted := false
	for range maxHops {
		resp, body, err := b.do(ctx, u, form)
		if err != nil {
			return nil, err
		}
		if next := redirectTarget(resp); next != nil {
			if (stop != nil && stop(next)) || (next.Scheme != "http" && next.Scheme != "https") {
				return &BrowserResult{FinalURL: next, Status: resp.StatusCode}, nil
			}
			u, form = next, nil
			continue
		}
		if f, ok := findForm(body, "password"); ok && !posted {
			f.values.Set("username", username)
			f.values.Set("password", password)
			u, form, posted = u.ResolveReference(f.action), f.values, true
			continue
		}
		return &BrowserResult{FinalURL: u, Status: resp.StatusCode, Body: body}, nil
	}
	return nil, fmt.Errorf("follow %s: more than %d redirects or forms", authURL, maxHops)
}

// ApproveDevice plays the person approving a device: it opens
// verificationURI, enters userCode, logs in and approves. It returns an
// error if the IdP refuses (wrong password, unknown, expired or used code).
func ApproveDevice(ctx context.Context, verificationURI, userCode, username, password string) error {
	return decideDevice(ctx, verificationURI, userCode, username, password, true)
}

// decideDevice is ApproveDevice, and also denies when approve is false.
func decideDevice(ctx context.Context, verificationURI, userCode, username, password string, approve bool) error {
	b := newBrowser()
	defer b.close()
	u, err := url.Parse(verificationURI)
	if err != nil {
		return fmt.Errorf("parse verification uri: %w", err)
	}
	resp, body, err := b.do(ctx, u, nil)
	if err != nil {
		return err
	}
	f, ok := findForm(body, "user_code")
	if resp.StatusCode != http.StatusOK || !ok {
		return fmt.Errorf("open device page %s: status %d without a device form", verificationURI, resp.StatusCode)
	}
	action := "deny"
	if approve {
		action = "approve"
	}
	if userCode != "" {
		f.values.Set("user_code", userCode)
	}
	f.values.Set("username", username)
	f.values.Set("password", password)
	f.values.Set("action", action)
	resp, body, err = b.do(ctx, u.ResolveReference(f.action), f.values)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s device: idp refused with status %d: %s", action, resp.StatusCode, pageError(body))
	}
	return nil
}

type browser struct {
	client    *http.Client
	transport *http.Transport
}

func newBrowser() *browser {
	jar, _ := cookiejar.New(nil) // never fails without options
	t := http.DefaultTransport.(*http.Transport).Clone()
	return &browser{transport: t, client: &http.Client{
		Jar:           jar,
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) close() { b.transport.CloseIdleConnections() }

// do sends a GET, or a form POST when form is not nil, and reads the body.
func (b *browser) do(ctx context.Context, u *url.URL, form url.Values) (*http.Response, string, error) {
	method, reqBody := http.MethodGet, io.Reader(nil)
	if form != nil {
		method, reqBody = http.MethodPost, strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), reqBody)
	if err != nil {
		return nil, "", fmt.Errorf("build request for %s: %w", u.Redacted(), err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", u.Redacted(), err)
	}
	return resp, string(body), nil
}

func redirectTarget(resp *http.Response) *url.URL {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return nil
	}
	loc, err := resp.Location()
	if err != nil {
		return nil
	}
	return loc
}

// The pages come from this package, so simple patterns are enough to read
// their forms: double-quoted attributes, one form per page.
var (
	formRe  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	inputRe = regexp.MustCompile(`(?is)<input\b([^>]*)>`)
	attrRe  = regexp.MustCompile(`(?is)([a-z_-]+)\s*=\s*"([^"]*)"`)
	errorRe = regexp.MustCompile(`(?is)<p class="error"[^>]*>(.*?)</p>`)
)

type htmlForm struct {
	action *url.URL
	values url.Values // the inputs' names and initial values
}

// findForm returns the first form that has an input named field.
func findForm(body, field string) (htmlForm, bool) {
	for _, m := range formRe.FindAllStringSubmatch(body, -1) {
		f := htmlForm{values: url.Values{}}
		action, err := url.Parse(attrs(m[1])["action"])
		if err != nil {
			continue
		}
		f.action = action
		found := false
		for _, in := range inputRe.FindAllStringSubmatch(m[2], -1) {
			a := attrs(in[1])
			if a["name"] == "" {
				continue
			}
			f.values.Set(a["name"], a["value"])
			found = found || a["name"] == field
		}
		if found {
			return f, true
		}
	}
	return htmlForm{}, false
}

func attrs(s string) map[string]string {
	m := map[string]string{}
	for _, a := range attrRe.FindAllStringSubmatch(s, -1) {
		m[strings.ToLower(a[1])] = html.UnescapeString(a[2])
	}
	return m
}

// pageError returns the error message shown on a page, if any.
func pageError(body string) string {
	if m := errorRe.FindStringSubmatch(body); m != nil {
		return html.UnescapeString(m[1])
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return strings.TrimSpace(body)
}
