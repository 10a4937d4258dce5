package testidp

import (
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
)

// pages serves the HTML forms a person uses: the login form of the
// authorization code flow and the device flow's user code page.
type pages struct {
	store       *storage
	log         *slog.Logger
	callbackURL string // zitadel's authorize callback, followed by the escaped request id
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>postern test IdP</title></head><body>
<h1>{{.Title}}</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{if .Form}}<form method="post" action="{{.Action}}">
{{if .ID}}<input type="hidden" name="id" value="{{.ID}}">{{end}}
{{if .Device}}<label>Code <input type="text" name="user_code" value="{{.UserCode}}"></label>{{end}}
<label>Username <input type="text" name="username" value="{{.Username}}" autofocus></label>
<label>Password <input type="password" name="password"></label>
{{if .Device}}<button type="submit" name="action" value="approve">Approve</button>
<button type="submit" name="action" value="deny">Deny</button>
{{else}}<button type="submit">Log in</button>{{end}}
</form>{{end}}
</body></html>
`))

type pageData struct {
	Title, Error, Action   string
	Form, Device           bool
	ID, UserCode, Username string
}

func render(w http.ResponseWriter, status int, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, d)
}

const msgBadLogin = "Wrong username or password."

// login serves GET /login?id=... (the form) and POST /login (the answer).
func (p *pages) login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "cannot parse form", http.StatusBadRequest)
		return
	}
	id := r.Form.Get("id")
	req, err := p.store.AuthRequestByID(r.Context(), id)
	if err != nil {
		render(w, http.StatusBadRequest, pageData{Title: "Log in", Error: "Unknown or expired login request."})
		return
	}
	form := pageData{Title: "Log in", Form: true, Action: loginPath, ID: id}
	if r.Method == http.MethodGet {
		render(w, http.StatusOK, form)
		return
	}
	username := r.PostForm.Get("username")
	u, ok := p.store.checkPassword(username, r.PostForm.Get("password"))
	if !ok {
		p.log.Warn("login refused", "username", username, "client_id", req.GetClientID())
		form.Error, form.Username = msgBadLogin, username
		render(w, http.StatusUnauthorized, form)
		return
	}
	if err := p.store.completeLogin(id, u); err != nil {
		p.log.Warn("login refused", "username", username, "client_id", req.GetClientID(), "err", err)
		render(w, http.StatusBadRequest, pageData{Title: "Log in", Error: "Unknown or expired login request."})
		return
	}
	p.log.Info("login", "username", username, "subject", u.Subject, "client_id", req.GetClientID())
	http.Redirect(w, r, p.callbackURL+url.QueryEscape(id), http.StatusSeeOther)
}

// device serves GET /device[?user_code=...] (the form) and POST /device,
// where the user approves or denies a device authorization.
func (p *pages) device(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "cannot parse form", http.StatusBadRequest)
		return
	}
	form := pageData{Title: "Connect a device", Form: true, Device: true, Action: devicePath, UserCode: r.Form.Get("user_code")}
	if r.Method == http.MethodGet {
		render(w, http.StatusOK, form)
		return
	}
	username := r.PostForm.Get("username")
	u, ok := p.store.checkPassword(username, r.PostForm.Get("password"))
	if !ok {
		p.log.Warn("device login refused", "username", username)
		form.Error, form.Username = msgBadLogin, username
		render(w, http.StatusUnauthorized, form)
		return
	}
	approve := r.PostForm.Get("action") == "approve"
	if err := p.store.decideDevice(form.UserCode, u, approve); err != nil {
		p.log.Warn("device decision refused", "username", username, "err", err)
		form.Error, form.Username = "Unknown, expired or already used code.", username
		render(w, http.StatusBadRequest, form)
		return
	}
	p.log.Info("device decision", "username", username, "subject", u.Subject, "approved", approve)
	title := "Device denied"
	if approve {
		title = "Device approved"
	}
	render(w, http.StatusOK, pageData{Title: title})
}
