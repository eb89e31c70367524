//go:build bench

package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteReport: the generated part goes between the markers (appended the first time) and
// nothing outside them changes.
func TestWriteReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	head := "# Benchmarks\n\nhand-written\n"
	if err := os.WriteFile(path, []byte(head), 0o644); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if err := writeReport(path, "first\n"); err != nil {
		t.Fatal(err)
	}
	want := head + "\n" + markBegin + "\nfirst\n" + markEnd + "\n"
	if got := read(); got != want {
		t.Fatalf("after the first write:\n%s\nwant:\n%s", got, want)
	}
	if err := os.WriteFile(path, []byte(read()+"\nhand-written after\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeReport(path, "second"); err != nil {
		t.Fatal(err)
	}
	want = head + "\n" + markBegin + "\nsecond\n" + markEnd + "\n\nhand-written after\n"
	if got := read(); got != want {
		t.Fatalf("after the second write:\n%s\nwant:\n%s", got, want)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(read(), markEnd, "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeReport(path, "third"); err == nil {
		t.Fatal("a file with only the begin marker was overwritten")
	}
}
