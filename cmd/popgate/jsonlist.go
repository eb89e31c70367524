package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Errors of readJSONList: an answer that is not the JSON the CLI expects, and one that ends
// before its JSON does (the server stopped half-way).
var (
	errListFormat = errors.New("unexpected JSON")
	errListCut    = errors.New("the answer ended early")
)

// readJSONList reads an answer {"<key>": [item, …], …} as it arrives and calls item with each
// element of the list, so that the CLI holds one element, not the whole list (the peer list of
// 100,000 peers is ≈ 42 MB). With echo set, it also writes the answer there as it goes,
// indented exactly as printJSON indents a whole answer. Other members are passed through to
// echo and otherwise ignored. Malformed JSON returns an error wrapping errListFormat, an
// answer that stops early errListCut, and a failure to read the reader's error.
func readJSONList(r io.Reader, key string, echo io.Writer, item func(raw json.RawMessage) error) error {
	dec := json.NewDecoder(r)
	var buf bytes.Buffer // one element, indented for echo
	write := func(s string) error {
		if echo == nil {
			return nil
		}
		_, err := io.WriteString(echo, s)
		return err
	}
	writeIndented := func(raw json.RawMessage, prefix string) error {
		if echo == nil {
			return nil
		}
		buf.Reset()
		if err := json.Indent(&buf, raw, prefix, "  "); err != nil {
			return fmt.Errorf("%w: %v", errListFormat, err)
		}
		_, err := echo.Write(buf.Bytes())
		return err
	}
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	if err := write("{"); err != nil {
		return err
	}
	members := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return listReadError(err)
		}
		name, _ := tok.(string)
		k, _ := json.Marshal(name)
		sep := "\n  "
		if members > 0 {
			sep = ",\n  "
		}
		members++
		if err := write(sep + string(k) + ": "); err != nil {
			return err
		}
		if name != key {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return listReadError(err)
			}
			if err := writeIndented(raw, "  "); err != nil {
				return err
			}
			continue
		}
		if err := expectDelim(dec, '['); err != nil {
			return err
		}
		if err := write("["); err != nil {
			return err
		}
		n := 0
		for dec.More() {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return listReadError(err)
			}
			sep := "\n    "
			if n > 0 {
				sep = ",\n    "
			}
			n++
			if err := write(sep); err != nil {
				return err
			}
			if err := writeIndented(raw, "    "); err != nil {
				return err
			}
			if err := item(raw); err != nil {
				return err
			}
		}
		if err := expectDelim(dec, ']'); err != nil {
			return err
		}
		end := "]"
		if n > 0 {
			end = "\n  ]"
		}
		if err := write(end); err != nil {
			return err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return err
	}
	end := "}"
	if members > 0 {
		end = "\n}"
	}
	if err := write(end); err != nil {
		return err
	}
	// What follows the object: only white space, which json.Indent (and so printJSON) keeps,
	// then the final newline.
	rest, err := io.ReadAll(io.LimitReader(io.MultiReader(dec.Buffered(), r), 4<<10))
	if err != nil {
		return listReadError(err)
	}
	if trimmed := bytes.TrimLeft(rest, " \t\r\n"); len(trimmed) > 0 {
		return fmt.Errorf("%w: %.20q after the answer", errListFormat, trimmed)
	}
	return write(string(rest) + "\n")
}

// expectDelim reads the next token, which must be the delimiter want.
func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return listReadError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("%w: %v where %v was expected", errListFormat, tok, want)
	}
	return nil
}

// listReadError tells malformed JSON (errListFormat) and an answer cut short (errListCut)
// from a failure to read.
func listReadError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax), errors.As(err, &typ):
		return fmt.Errorf("%w: %v", errListFormat, err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errListCut
	}
	return err
}

// errWriter remembers the first error of w, to tell a failure to print from one to read.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}
