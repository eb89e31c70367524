package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/popgate/popgate/gateway/nodesync"
	"github.com/popgate/popgate/store"
)

// databaseName is the database file of a data dir, as serve names it (openDataDir); the key
// file beside it is store.KeyFileName.
const databaseName = "popgate.db"

// These commands open the database file itself, not the control socket: they work whether
// popgate serve runs or not, as a user who may read the data dir (the service's, or root).

const dbAbout = "Look after the database of a data dir directly, whether popgate serve runs or not " +
	"(run it as the user serve runs as, or as root). A backup is 'popgate backup FILE'."

var dbCommands = []subcommand{
	{cmdSpec{
		name:  "db check",
		usage: "db check [--data-dir DIR]",
		about: "Check the database of a data dir without changing it: SQLite's integrity and foreign key " +
			"checks, then what popgate keeps true itself (the node key and every server-generated private key " +
			"and TOTP secret open with the key file secret.key, addresses, sites, an enabled owner). It reads one " +
			"consistent snapshot, also while popgate serve runs. Prints a report; the exit status is 0 when " +
			"nothing is wrong and 1 when something is.",
		example: "popgate db check\nsudo popgate db check --data-dir /var/lib/popgate",
	}, (*app).dbCheck},
}

func (a *app) cmdDB(ctx context.Context, args []string) error {
	return a.group(ctx, "db", dbAbout, dbCommands, args)
}

var backupSpec = cmdSpec{
	name:  "backup",
	usage: "backup [--force] [--data-dir DIR] FILE",
	about: "Write a consistent copy of the database of a data dir to FILE (mode 0600), also while popgate " +
		"serve runs and writes it (SQLite's VACUUM INTO). An existing FILE is refused unless --force is given. " +
		"The copy does not hold the key file secret.key, which the server-generated private keys in it are " +
		"sealed with: keep a copy of that file with your backups (README.md, \"Backup and restore\").",
	example: "sudo popgate backup /root/popgate-$(date +%F).db",
	args:    []string{"FILE"},
}

// dataDirFlag adds --data-dir to f; dataDir resolves it after parsing.
type dataDirFlag struct{ dir string }

func (d *dataDirFlag) add(f *cmdFlags) {
	f.String(&d.dir, "data-dir", defaultDataDir, "`DIR` of popgate serve, holding its database "+databaseName)
	f.notes["data-dir"] = "env " + envDataDir
}

// resolve picks the data dir as the admin commands do: --data-dir, else POPGATE_DATA_DIR,
// else ./popgate-data, or the packaged service's /var/lib/popgate when only that one holds a
// database.
func (d *dataDirFlag) resolve(a *app, f *cmdFlags) (string, error) {
	if !f.isSet("data-dir") {
		if v := a.getenv(envDataDir); v != "" {
			d.dir = v
		} else if !fileExists(filepath.Join(d.dir, databaseName)) && fileExists(filepath.Join(packagedDataDir, databaseName)) {
			d.dir = packagedDataDir
		}
	}
	if d.dir == "" {
		return "", usagef("%s: --data-dir is empty: name the data dir of 'popgate serve'", f.spec.name)
	}
	return d.dir, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func (a *app) dbCheck(ctx context.Context, spec cmdSpec, args []string) error {
	f := newCmdFlags(spec)
	var dd dataDirFlag
	dd.add(f)
	if _, err := f.parse(a.stdout, args); err != nil {
		return err
	}
	dir, err := dd.resolve(a, f)
	if err != nil {
		return err
	}
	r, err := store.Check(ctx, filepath.Join(dir, databaseName), filepath.Join(dir, store.KeyFileName))
	if err != nil {
		return dbError(err)
	}
	fmt.Fprintf(a.stdout, "database %s: schema version %d (this popgate's: %d)\n", r.Path, r.Version, r.Latest)
	fmt.Fprintf(a.stdout, "rows: %s\n", r.RowSummary())
	for _, n := range r.Notes {
		fmt.Fprintf(a.stdout, "note: %s\n", n)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(a.stdout, "problem: %s\n", p)
	}
	if r.OK() {
		fmt.Fprintln(a.stdout, "ok: SQLite's integrity and foreign key checks and popgate's own checks found nothing wrong")
		return nil
	}
	n := "1 problem"
	if len(r.Problems) > 1 {
		n = fmt.Sprintf("%d problems", len(r.Problems))
	}
	return fmt.Errorf("database %s has %s (listed above): fix what they say, or restore a backup (README.md, \"Backup and restore\")", r.Path, n)
}

func (a *app) cmdBackup(ctx context.Context, args []string) error {
	f := newCmdFlags(backupSpec)
	var dd dataDirFlag
	var force bool
	f.Bool(&force, "force", "replace FILE when it exists")
	dd.add(f)
	pos, err := f.parse(a.stdout, args)
	if err != nil {
		return err
	}
	dir, err := dd.resolve(a, f)
	if err != nil {
		return err
	}
	if pos[0] == "" || strings.HasSuffix(pos[0], string(filepath.Separator)) {
		return usagef("backup: FILE %q is not a file name: name the file to write, e.g. /root/popgate-backup.db", pos[0])
	}
	info, err := store.Backup(ctx, filepath.Join(dir, databaseName), pos[0], force)
	if err != nil {
		return dbError(err)
	}
	a.note("popgate: backed up %s (schema version %d; %d tenants, %d peers, %d admins) to %s (%d bytes, mode 0600)",
		filepath.Join(dir, databaseName), info.Version, info.Rows["tenants"], info.Rows["peers"], info.Rows["admins"], info.Path, info.Size)
	keyPath, _ := filepath.Abs(filepath.Join(dir, store.KeyFileName))
	a.note("popgate: a restore also needs the key file %s: the private keys in the backup are sealed with it. "+
		"Keep a copy of it with your backups, as safely (with both, anyone has the keys); README.md, \"Backup and restore\", says how to restore", keyPath)
	idPath, _ := filepath.Abs(filepath.Join(dir, nodesync.IdentityFileName))
	if _, err := os.Stat(idPath); err == nil {
		a.note("popgate: keep the identity key %s with them too: the controller and its nodes know each other by it; without it every node must join again", idPath)
	}
	return nil
}

// dbError is err without the package prefix the user need not read (exit status 1).
func dbError(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "store: "))
}
