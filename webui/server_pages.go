package webui

import (
	"html/template"
	"net/http"
)

// basicPages is the Pages the server uses when it is given none: the sign-in, account and
// error pages as plain HTML forms, and no other pages. It keeps a node manageable (with the
// CLI and the API) before the real pages exist, and needs no static files.
type basicPages struct{}

var (
	_ Pages        = basicPages{}
	_ AccountPages = basicPages{}
)

func newBasicPages() Pages { return basicPages{} }

func (basicPages) Routes(mux *http.ServeMux, protect func(min Role, h http.HandlerFunc) http.Handler) {
	mux.Handle("GET /{$}", protect(RoleViewer, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/account", http.StatusSeeOther)
	}))
}

var basicLogin = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · popgate</title></head><body>
<h1>popgate</h1>
{{if .Error}}<p role="alert"><strong>{{.Error}}</strong></p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="next" value="{{.Next}}">
<p><label>Admin name<br><input name="name" value="{{.Name}}" autocomplete="username" required autofocus></label></p>
<p><label>Password<br><input name="password" type="password" autocomplete="current-password" required></label></p>
{{if .NeedTOTP}}<p><label>One-time code<br><input name="totp" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]*" required></label></p>{{end}}
<p><button>Sign in</button></p>
</form></body></html>
`))

var basicError = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Code}} · popgate</title></head><body>
<h1>{{.Code}} {{.Status}}</h1><p>{{.Msg}}</p><p><a href="/">Start page</a></p></body></html>
`))

var basicAccount = template.Must(template.New("account").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Account · popgate</title></head><body>
<h1>{{.Name}}</h1>
<p>Role {{.Role}}{{if .Tenant}} of tenant {{.Tenant}}{{end}}; signed in in {{.Sessions}} browser(s).</p>
{{if .Error}}<p role="alert"><strong>{{.Error}}</strong></p>{{end}}
{{if .Notice}}<p role="status">{{.Notice}}</p>{{end}}
<h2>Password</h2>
<form method="post" action="/account/password">
<p><label>Current password<br><input name="current" type="password" autocomplete="current-password" required></label></p>
<p><label>New password<br><input name="new" type="password" autocomplete="new-password" minlength="12" required></label></p>
<p><label>New password again<br><input name="confirm" type="password" autocomplete="new-password" minlength="12" required></label></p>
<p><button>Change password</button></p></form>
<h2>Two-factor sign-in</h2>
{{if .TOTPEnabled}}
<form method="post" action="/account/totp/disable">
<p><label>Password<br><input name="password" type="password" autocomplete="current-password" required></label></p>
<p><label>One-time code<br><input name="code" inputmode="numeric" autocomplete="one-time-code" required></label></p>
<p><button>Turn off</button></p></form>
{{else if .Enrolling}}
<p><img src="{{.TOTPQRPath}}" alt="QR code for the authenticator app" width="256" height="256"></p>
<p>Or type this key: <code>{{.TOTPSecret}}</code></p>
<form method="post" action="/account/totp/confirm">
<p><label>Code from the app<br><input name="code" inputmode="numeric" autocomplete="one-time-code" required></label></p>
<p><button>Turn on</button></p></form>
{{else}}
<form method="post" action="/account/totp/enrol"><p><button>Set up an authenticator app</button></p></form>
{{end}}
<h2>Sign out</h2>
<form method="post" action="/logout"><button>Sign out</button></form>
<form method="post" action="/logout-everywhere"><button>Sign out everywhere</button></form>
</body></html>
`))

func (basicPages) RenderLogin(w http.ResponseWriter, r *http.Request, code int, page LoginPage) {
	render(w, code, basicLogin, page)
}

func (basicPages) RenderError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	render(w, code, basicError, struct {
		Code        int
		Status, Msg string
	}{code, http.StatusText(code), msg})
}

func (basicPages) RenderAccount(w http.ResponseWriter, r *http.Request, code int, page AccountPage) {
	renderBasicAccount(w, code, page)
}

// renderBasicAccount renders the built-in account page, for a Pages without AccountPages.
func renderBasicAccount(w http.ResponseWriter, code int, page AccountPage) {
	render(w, code, basicAccount, page)
}

func render(w http.ResponseWriter, code int, t *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	t.Execute(w, data)
}
