package gateway

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNewMakesDataDirPrivate: a data dir that exists with mode 0755 is 0700 after New, which
// logs that once; the next New finds it private and says nothing.
func TestNewMakesDataDirPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	for i, wantLog := range []bool{true, false} {
		var logs bytes.Buffer
		n, err := New(Config{DataDir: dir, PublicEndpoint: "127.0.0.1:51820"}, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		n.Close()
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("start %d: data dir mode %v, %v; want 0700", i+1, fi.Mode().Perm(), err)
		}
		said := strings.Count(logs.String(), "made it private")
		if wantLog && (said != 1 || !strings.Contains(logs.String(), "mode_was=0755")) || !wantLog && said != 0 {
			t.Errorf("start %d logged:\n%s", i+1, logs.String())
		}
	}
}
