package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// applicationID marks a SQLite file as popgate's ("popg"), so that Open refuses to migrate
// some other program's database.
const applicationID = 0x706f7067

// migration is one numbered schema change.
type migration struct {
	version int    // from the file name: 0001_init.sql is 1
	name    string // the file name
	sql     string
}

// loadMigrations reads the NNNN_name.sql files of fsys's migrations directory, ordered by
// number. The numbers must run 1, 2, 3, … without gaps or duplicates.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, fmt.Errorf("store: read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries { // ReadDir sorts by name, and names start with the zero-padded number
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || len(num) != 4 || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("store: migration file %s: name must be NNNN_description.sql", name)
		}
		if want := len(ms) + 1; v != want {
			return nil, fmt.Errorf("store: migration file %s: expected number %04d next", name, want)
		}
		b, err := fs.ReadFile(fsys, path.Join("migrations", name))
		if err != nil {
			return nil, fmt.Errorf("store: read migration %s: %w", name, err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("store: no migrations embedded")
	}
	return ms, nil
}

// migrate brings the schema up to the newest embedded migration (or to version to, when
// that is not 0), each in its own transaction, sets s.version, and refuses databases it does
// not understand.
func (s *Store) migrate(ctx context.Context, to int) error {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		return err
	}
	if to > 0 && to < len(ms) {
		ms = ms[:to]
	}
	var appID, version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return fmt.Errorf("store: read %s: %w", s.path, err)
	}
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("store: read %s: %w", s.path, err)
	}
	if appID != 0 && appID != applicationID {
		return errorf(ErrInvalid, "%s is not a popgate database (SQLite application_id %#x): point popgate at its own database file", s.path, appID)
	}
	if version > len(ms) {
		return fmt.Errorf("database schema version %d is newer than this popgate (%d): upgrade popgate", version, len(ms))
	}
	if version == 0 {
		var tables int
		if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
			return fmt.Errorf("store: read %s: %w", s.path, err)
		}
		if tables > 0 {
			return errorf(ErrInvalid, "%s is not a popgate database (it has tables but no popgate schema version): point popgate at its own database file", s.path)
		}
	}
	for _, m := range ms[version:] {
		if err := s.writeTx(ctx, kindSchema, func(tx *sql.Tx) error { return applyMigration(ctx, tx, m) }); err != nil {
			return err
		}
	}
	s.version = len(ms)
	return nil
}

// applyMigration runs m in tx unless another process applied it since migrate looked.
func applyMigration(ctx context.Context, tx *sql.Tx, m migration) error {
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("store: migration %s: %w", m.name, err)
	}
	if version >= m.version {
		return nil
	}
	if version != m.version-1 {
		return fmt.Errorf("store: migration %s: database is at version %d, expected %d", m.name, version, m.version-1)
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("store: migration %s: %w", m.name, err)
	}
	// PRAGMA takes no parameters; both values are integers formatted here.
	for _, p := range []string{
		fmt.Sprintf("PRAGMA user_version = %d", m.version),
		fmt.Sprintf("PRAGMA application_id = %d", applicationID),
	} {
		if _, err := tx.ExecContext(ctx, p); err != nil {
			return fmt.Errorf("store: migration %s: %w", m.name, err)
		}
	}
	return nil
}
