package webui

import (
	"bufio"
	"bytes"
	"encoding/json"
	"iter"
	"net/http"
)

// writeJSONList answers 200 with {"<key>": [items…]}, byte for byte what writeJSON writes for
// a struct with that one list field, but an item at a time: however long the list, the answer
// is never held whole (100,000 peers are ≈ 42 MB of JSON). Once the first item is out the
// status cannot change: an error (the client went away) ends the answer early and is
// returned, for the log only.
func writeJSONList[T any](w http.ResponseWriter, key string, items iter.Seq[T]) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	// Larger than the ResponseWriter's own buffer, so that chunks are few.
	out := bufio.NewWriterSize(w, 32<<10)
	k, err := json.Marshal(key)
	if err != nil {
		return err
	}
	out.WriteString("{\n  ")
	out.Write(k)
	out.WriteString(": [")
	// Each item is indented as writeJSON indents it two levels down. The Encoder reuses its
	// buffers; item, and v (for Encode's interface) are reused too.
	var item bytes.Buffer
	enc := json.NewEncoder(&item)
	enc.SetIndent("    ", "  ")
	v := new(T)
	sep := "\n    "
	for it := range items {
		item.Reset()
		*v = it
		if err := enc.Encode(v); err != nil {
			return err
		}
		out.WriteString(sep)
		sep = ",\n    "
		if _, err := out.Write(bytes.TrimSuffix(item.Bytes(), []byte("\n"))); err != nil {
			return err
		}
	}
	if sep == "\n    " {
		out.WriteString("]\n}\n")
	} else {
		out.WriteString("\n  ]\n}\n")
	}
	return out.Flush()
}
