package gateway

import (
	"fmt"
	"log/slog"
	"os"
)

// privateDataDir makes the data dir, which holds the database, the key file and the control
// socket, 0700 when group or others may use it: os.MkdirAll leaves a directory that exists
// as it is, and one made by hand or by an older package may be 0755. It logs when it changed
// the mode (so once: the next start finds it private).
func privateDataDir(dir string, log *slog.Logger) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data dir %s is not a directory: choose another --data-dir", dir)
	}
	perm := fi.Mode().Perm()
	if perm&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("data dir %s has mode %04o, so other users may reach the database and the control socket, and it cannot be made private (%w): run 'chmod 700 %s' as its owner", dir, perm, err, dir)
	}
	log.Warn("the data dir was open to other users: made it private (0700); it holds the database, the key file and the control socket",
		"dir", dir, "mode_was", fmt.Sprintf("%04o", perm))
	return nil
}
