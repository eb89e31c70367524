package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadJSONList checks what readJSONList echoes against printJSON of the whole answer, the
// reference, and the elements it hands over against a decode of the whole answer.
func TestReadJSONList(t *testing.T) {
	for _, answer := range []string{
		`{"peers":[]}`,
		`{"peers":[{"name":"a"}]}`,
		`{"peers":[{"name":"a","groups":["x","y"],"n":1.50,"e":"\u003c\u2028é"},{},[],null,2]}`,
		"{\n  \"peers\": [\n    {\n      \"name\": \"a\"\n    }\n  ]\n}\n",
		`{"next":"b","peers":[{"name":"a"}],"total":{"n":3,"of":[1,2]}}`,
		`{"other":[1,2]}`,
		`{}`,
		` { "peers" : [ 1 , 2 ] } `,
	} {
		t.Run(answer, func(t *testing.T) {
			var want bytes.Buffer
			ta := &app{stdout: &want}
			if err := ta.printJSON([]byte(answer)); err != nil {
				t.Fatal(err)
			}
			var whole struct{ Peers []json.RawMessage }
			if err := json.Unmarshal([]byte(answer), &whole); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			var items []string
			// One byte per read: the decoder must cope with any split of the stream.
			err := readJSONList(iotest.OneByteReader(strings.NewReader(answer)), "peers", &got, func(raw json.RawMessage) error {
				items = append(items, string(raw))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("echo:\n%s\nwant (printJSON):\n%s", &got, &want)
			}
			if len(items) != len(whole.Peers) {
				t.Fatalf("items %q, want %d", items, len(whole.Peers))
			}
			for i := range items {
				if items[i] != string(whole.Peers[i]) {
					t.Errorf("item %d = %s, want %s", i, items[i], whole.Peers[i])
				}
			}
		})
	}
}

func TestReadJSONListErrors(t *testing.T) {
	stop := errors.New("stop")
	for _, tc := range []struct {
		name   string
		r      io.Reader
		item   error
		want   error
		before int // items handed over before the error
	}{
		{"not JSON", strings.NewReader(`<html>`), nil, errListFormat, 0},
		{"not an object", strings.NewReader(`[{"name":"a"}]`), nil, errListFormat, 0},
		{"list not an array", strings.NewReader(`{"peers":{"name":"a"}}`), nil, errListFormat, 0},
		{"bad element", strings.NewReader(`{"peers":[{"name":"a"},{"name":}]}`), nil, errListFormat, 1},
		{"cut short", strings.NewReader(`{"peers":[{"name":"a"},{"na`), nil, errListCut, 1},
		{"cut between elements", strings.NewReader(`{"peers":[{"name":"a"},`), nil, errListCut, 1},
		{"empty", strings.NewReader(``), nil, errListCut, 0},
		{"more after the answer", strings.NewReader(`{"peers":[]} {}`), nil, errListFormat, 0},
		{"read fails", io.MultiReader(strings.NewReader(`{"peers":[{"name":"a"},`), iotest.ErrReader(io.ErrClosedPipe)), nil, io.ErrClosedPipe, 1},
		{"item fails", strings.NewReader(`{"peers":[{"name":"a"},{"name":"b"}]}`), stop, stop, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			err := readJSONList(tc.r, "peers", io.Discard, func(json.RawMessage) error {
				n++
				return tc.item
			})
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if n != tc.before {
				t.Errorf("%d items before the error, want %d", n, tc.before)
			}
		})
	}
}

// TestStreamTable checks streamTable against newTable (text/tabwriter) for tables it holds
// whole, and the layout of the rows it prints after sizing the columns.
func TestStreamTable(t *testing.T) {
	rows := [][]string{
		{"TENANT", "NAME", "GROUPS", "RX"},
		{"acme", "laptop", "eng,ops", "1.5 MiB"},
		{"acme", "naïve-ünïcode", "-", "0 B"},
		{"bravo-longer-name", "p", "", "12 KiB"},
	}
	var want bytes.Buffer
	tw := newTable(&want)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
	for _, hold := range []int{len(rows), 100} {
		var got bytes.Buffer
		st := newStreamTable(&got, hold)
		for _, r := range rows {
			if err := st.Row(r...); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Flush(); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("hold %d:\n%s\nwant (tabwriter):\n%s", hold, &got, &want)
		}
	}

	// Sized on the first two rows: a later wider cell pushes only its own row.
	var got bytes.Buffer
	st := newStreamTable(&got, 2)
	st.Row("A", "B", "C")
	st.Row("aa", "bb", "cc")
	st.Row("aaaaaa", "b", "c")
	st.Row("a", "b", "c")
	st.Flush()
	if want := "A   B   C\naa  bb  cc\naaaaaa  b   c\na   b   c\n"; got.String() != want {
		t.Errorf("rows after the hold:\n%q\nwant\n%q", got.String(), want)
	}
}

// TestPeerListLong lists more peers than the table holds, from a fake daemon: the table is
// sized on the first rows and every peer is printed; --json prints what printJSON would.
func TestPeerListLong(t *testing.T) {
	const n = tableHold + 17
	var body strings.Builder
	body.WriteString(`{"peers":[`)
	for i := range n {
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"tenant":"t%03d","name":"peer-%06d","ipv4":"100.64.%d.%d","ipv6":"fd00::%x","enabled":true,"created_at":"2026-03-11T15:09:26Z","online":false,"rx_bytes":%d,"tx_bytes":0}`,
			i/1000, i, i/250, i%250+1, i, i%1000)
	}
	body.WriteString("]}\n") // as writeJSON ends it
	d := startFakeDaemon(t, map[string]answer{"GET /api/v1/peers": {200, body.String(), nil}})

	ta := newTestApp(t, nil)
	if code := ta.runArgs("peer", "list", "--data-dir", d.dir); code != exitOK {
		t.Fatalf("exit status %d: %s", code, ta.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(ta.stdout.String(), "\n"), "\n")
	if len(lines) != n+1 {
		t.Fatalf("%d lines, want a header and %d peers", len(lines), n)
	}
	// Every row is laid out on the widths of the first rows (no cell here is wider).
	col := strings.Index(lines[0], "IPV4")
	for i, l := range lines[1:] {
		if !strings.HasPrefix(l[col:], fmt.Sprintf("100.64.%d.%d ", i/250, i%250+1)) {
			t.Fatalf("row %d not aligned with the header:\n%s\n%s", i, lines[0], l)
		}
	}

	ta = newTestApp(t, nil)
	if code := ta.runArgs("peer", "list", "--json", "--data-dir", d.dir); code != exitOK {
		t.Fatalf("exit status %d: %s", code, ta.stderr)
	}
	var want bytes.Buffer
	if err := (&app{stdout: &want}).printJSON([]byte(body.String())); err != nil {
		t.Fatal(err)
	}
	if ta.stdout.String() != want.String() {
		t.Errorf("peer list --json differs from printJSON of the answer")
	}
}

// TestPeerListBadAnswer: an answer the CLI cannot read is an error with what to do, also after
// some peers were printed.
func TestPeerListBadAnswer(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"peers":[{"tenant":"acme","name":"a"},{"tenant":`, "popgate: popgate serve's answer to GET /api/v1/peers ended early: see its log\n"},
		{`{"peers":[{"tenant":"acme","name":1}]}`, "popgate: popgate serve answered GET /api/v1/peers with JSON this popgate does not understand"},
		{`<html>`, "popgate: popgate serve answered GET /api/v1/peers with JSON this popgate does not understand"},
	} {
		d := startFakeDaemon(t, map[string]answer{"GET /api/v1/peers": {200, tc.body, nil}})
		ta := newTestApp(t, nil)
		if code := ta.runArgs("peer", "list", "--data-dir", d.dir); code != exitRuntime {
			t.Errorf("%s: exit status %d, want %d", tc.body, code, exitRuntime)
		}
		if !strings.HasPrefix(ta.stderr.String(), tc.want) {
			t.Errorf("%s: stderr %q, want %q", tc.body, ta.stderr, tc.want)
		}
	}
}
