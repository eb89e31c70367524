package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"time"
)

//go:embed static/*.js static/*.css static/*.svg
var staticFS embed.FS

// staticFile is one embedded static file; its URL carries its hash so that browsers may
// cache it for good.
type staticFile struct {
	data  []byte
	hash  string // hex sha256
	ctype string
}

// loadStatic reads and hashes the embedded static files once.
func (u *UI) loadStatic() error {
	u.static = map[string]staticFile{}
	return fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := staticFS.ReadFile(p)
		if err != nil {
			return fmt.Errorf("webui: read %s: %w", p, err)
		}
		sum := sha256.Sum256(data)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		u.static[path.Base(p)] = staticFile{data: data, hash: hex.EncodeToString(sum[:]), ctype: ctype}
		return nil
	})
}

// assetURL is the versioned URL of static file name (the "asset" template function).
func (u *UI) assetURL(name string) (string, error) {
	f, ok := u.static[name]
	if !ok {
		return "", fmt.Errorf("no static file %q", name)
	}
	return "/static/" + name + "?v=" + f.hash[:16], nil
}

// serveStatic serves GET /static/{name}. A URL with the current version is cached for a
// year; any other is revalidated by its ETag.
func (u *UI) serveStatic(w http.ResponseWriter, r *http.Request) {
	f, ok := u.static[path.Base(r.URL.Path)]
	if !ok || path.Dir(r.URL.Path) != "/static" {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("ETag", `"`+f.hash[:32]+`"`)
	if r.URL.Query().Get("v") == f.hash[:16] {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.data))
}
