package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Proc is a long-running process that a test started. Its stdout and stderr go to the file
// LogPath; the log is attached to the test output when the test fails. The test's cleanup
// stops the process (SIGTERM, then SIGKILL) unless the test already did.
type Proc struct {
	Cmd     *exec.Cmd
	LogPath string

	done chan struct{} // closed when the process has exited and been reaped
	err  error         // Cmd.Wait's result; read only after done is closed
}

// startProc starts cmd with its output going to a new log file, named after the program
// (args, as the test gave them), in a test temp dir and registers its cleanup. The process gets
// SIGKILL if the test binary dies first.
func startProc(t testing.TB, args []string, cmd *exec.Cmd) (*Proc, error) {
	t.Helper()
	name := "proc"
	for _, a := range args {
		if a != "env" && !strings.Contains(a, "=") {
			name = filepath.Base(a)
			break
		}
	}
	logf, err := os.CreateTemp(t.TempDir(), name+"-*.log")
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", strings.Join(cmd.Args, " "), err)
	}
	p := &Proc{Cmd: cmd, LogPath: logf.Name(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.Stop(10 * time.Second); errors.Is(err, ErrKilled) {
			t.Logf("stop %s (pid %d): %v", strings.Join(cmd.Args, " "), p.Pid(), err)
		}
		if t.Failed() {
			t.Logf("log of %s (pid %d):\n%s", strings.Join(cmd.Args, " "), p.Pid(), p.LogTail(200))
		}
	})
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited and, if so, Cmd.Wait's error.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Wait waits for the process to exit or ctx to end and returns Cmd.Wait's error or ctx's.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Signal sends sig to the process unless it has exited.
func (p *Proc) Signal(sig os.Signal) error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	return p.Cmd.Process.Signal(sig)
}

// ErrKilled is returned by Stop when the process ignored SIGTERM and had to be killed.
var ErrKilled = errors.New("did not exit after SIGTERM: killed")

// Stop sends SIGTERM, waits up to timeout, then sends SIGKILL. It returns Cmd.Wait's error
// (nil for a clean exit), or ErrKilled. Stopping an exited process returns how it exited.
func (p *Proc) Stop(timeout time.Duration) error {
	if exited, err := p.Exited(); exited {
		return err
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
	}
	_ = p.Cmd.Process.Kill()
	<-p.done
	return ErrKilled
}

// Log returns everything the process wrote so far.
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	return string(b)
}

// LogTail returns the last n lines of the log.
func (p *Proc) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("(… %d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
