package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/popgate/popgate/webui"
)

// maxAnswer bounds what the client reads of one answer it holds whole. The peer list, the one
// answer that grows with the installation (≈ 42 MB for 100,000 peers), is read as a stream
// (see stream) and not bounded.
const maxAnswer = 512 << 20

// controlClient speaks the JSON API of webui/apitypes.go over the control socket of a
// running `popgate serve`, HTTP/1.1 on a unix socket.
type controlClient struct {
	dataDir string
	socket  string
	timeout time.Duration
	http    *http.Client
}

func newControlClient(dataDir string, timeout time.Duration) *controlClient {
	socket := filepath.Join(dataDir, controlSocketName)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true, // one request per command
	}
	return &controlClient{
		dataDir: dataDir,
		socket:  socket,
		timeout: timeout,
		http:    &http.Client{Transport: tr, Timeout: timeout},
	}
}

// apiError is a non-2xx answer: its HTTP status and the message for the user, the server's
// own when it sent one.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// call sends method path with body (JSON, when not nil) and returns the body of a 2xx
// answer. A non-2xx answer returns an *apiError with the server's message.
func (c *controlClient) call(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	contentType := ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd, contentType = bytes.NewReader(b), "application/json"
	}
	data, _, err := c.do(ctx, method, path, contentType, rd)
	return data, err
}

// do sends method path with body of contentType (none when body is nil) and returns the body
// and header of a 2xx answer. A non-2xx answer returns an *apiError.
func (c *controlClient) do(ctx context.Context, method, path, contentType string, body io.Reader) ([]byte, http.Header, error) {
	resp, err := c.open(ctx, method, path, contentType, body)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, nil, c.connError(err)
	}
	return data, resp.Header, nil
}

// stream sends GET path and returns the body of a 2xx answer as it arrives, for answers too
// long to hold (the peer list); the caller closes it and passes read errors to connError. A
// non-2xx answer returns an *apiError.
func (c *controlClient) stream(ctx context.Context, path string) (io.ReadCloser, error) {
	resp, err := c.open(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// open sends the request and returns a 2xx answer with its body unread. A non-2xx answer is
// read and returned as an *apiError.
func (c *controlClient) open(ctx context.Context, method, path, contentType string, body io.Reader) (*http.Response, error) {
	// The host is a placeholder: the transport always dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://popgate"+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.connError(err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, c.connError(err)
	}
	var apiErr webui.APIError
	if json.Unmarshal(data, &apiErr) == nil && apiErr.Error != "" {
		return nil, &apiError{resp.StatusCode, apiErr.Error}
	}
	return nil, &apiError{resp.StatusCode, fmt.Sprintf("popgate serve answered %s %s with %s%s", method, path, resp.Status, snippet(data))}
}

// callJSON is call that decodes the answer into out and also returns it raw, for --json.
func (c *controlClient) callJSON(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	data, err := c.call(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	if err := decodeAnswer(method, path, data, out); err != nil {
		return nil, err
	}
	return data, nil
}

// decodeAnswer decodes the JSON answer data to method path into out.
func decodeAnswer(method, path string, data []byte, out any) error {
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("popgate serve answered %s %s with JSON this popgate does not understand (%v): are both the same version?", method, path, err)
	}
	return nil
}

// connError says what a failure to talk to the socket means for the user.
func (c *controlClient) connError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("no popgate serve is running with data dir %s (nothing listens on %s): start it with 'popgate serve' (or 'make run')", c.dataDir, c.socket)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("permission denied on %s: run this command as the user that runs 'popgate serve' (or as root)", c.socket)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("popgate serve did not answer on %s within %s: is it overloaded or stuck? see its log", c.socket, c.timeout)
	}
	return fmt.Errorf("cannot talk to popgate serve on %s: %v", c.socket, err)
}

// snippet quotes the start of an unexpected answer for an error message.
func snippet(data []byte) string {
	s := strings.TrimSpace(string(data))
	if s == "" {
		return ""
	}
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return fmt.Sprintf(": %q", s)
}
