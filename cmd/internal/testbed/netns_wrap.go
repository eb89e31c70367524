package testbed

import (
	"fmt"
	"os/exec"
	"syscall"
)

// Wrap rewrites cmd, which must not have started yet, to run inside the namespace through
// `ip netns exec` (which execs the program, so the process's pid stays the command's own),
// for commands that code of another package builds (a browser that a driver starts). cmd
// keeps its arguments, environment, working directory and extra files; it gets SIGKILL when
// the thread that started it dies, as the commands of Command do.
func (ns *Netns) Wrap(cmd *exec.Cmd) error {
	switch {
	case cmd.Process != nil:
		return fmt.Errorf("testbed: wrap %s: already started", cmd.Path)
	case cmd.Err != nil:
		return fmt.Errorf("testbed: wrap %s: %w", cmd.Path, cmd.Err)
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("testbed: wrap %s: %w", cmd.Path, err)
	}
	args := []string{"ip", "netns", "exec", ns.Name, cmd.Path}
	if len(cmd.Args) > 1 {
		args = append(args, cmd.Args[1:]...)
	}
	cmd.Path, cmd.Args = ip, args
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	return nil
}
