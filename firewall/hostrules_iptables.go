package firewall

import (
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// iptablesAPI is the part of go-iptables that HostRules uses, for one address family.
// Rule specs are passed as separate arguments in the form `iptables -S` prints them.
type iptablesAPI interface {
	// ChainExists reports whether chain exists in table.
	ChainExists(table, chain string) (bool, error)
	// ClearChain creates chain, or flushes it when it exists.
	ClearChain(table, chain string) error
	// DeleteChain deletes an empty chain that no rule jumps to.
	DeleteChain(table, chain string) error
	// Insert puts a rule at the 1-based position pos of chain.
	Insert(table, chain string, pos int, rulespec ...string) error
	// Append adds a rule at the end of chain.
	Append(table, chain string, rulespec ...string) error
	// Delete removes the first rule of chain that matches rulespec.
	Delete(table, chain string, rulespec ...string) error
	// List returns chain as `iptables -t table -S chain` prints it: its "-P chain POLICY" or
	// "-N chain" line, then one "-A chain …" line per rule.
	List(table, chain string) ([]string, error)
}

var _ iptablesAPI = (*realIPTables)(nil)

// realIPTables drives the iptables or ip6tables binary through go-iptables. It turns the
// multi-line stderr that go-iptables puts in its errors into one line.
type realIPTables struct {
	ipt *iptables.IPTables
}

// lockWaitSeconds bounds the wait for the xtables lock that another program may hold.
const lockWaitSeconds = 5

// newRealIPTables is the default HostRulesConfig.newIPTables. It fails with an error wrapping
// exec.ErrNotFound when the binary for proto is not installed.
func newRealIPTables(proto iptables.Protocol) (iptablesAPI, error) {
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Timeout(lockWaitSeconds))
	if err != nil {
		return nil, err
	}
	return &realIPTables{ipt: ipt}, nil
}

func (r *realIPTables) ChainExists(table, chain string) (bool, error) {
	ok, err := r.ipt.ChainExists(table, chain)
	return ok, oneLineErr(err)
}

func (r *realIPTables) ClearChain(table, chain string) error {
	return oneLineErr(r.ipt.ClearChain(table, chain))
}

func (r *realIPTables) DeleteChain(table, chain string) error {
	return oneLineErr(r.ipt.DeleteChain(table, chain))
}

func (r *realIPTables) Insert(table, chain string, pos int, rulespec ...string) error {
	return oneLineErr(r.ipt.Insert(table, chain, pos, rulespec...))
}

func (r *realIPTables) Append(table, chain string, rulespec ...string) error {
	return oneLineErr(r.ipt.Append(table, chain, rulespec...))
}

func (r *realIPTables) Delete(table, chain string, rulespec ...string) error {
	return oneLineErr(r.ipt.Delete(table, chain, rulespec...))
}

func (r *realIPTables) List(table, chain string) ([]string, error) {
	rules, err := r.ipt.List(table, chain)
	return rules, oneLineErr(err)
}

// oneLineError keeps the wrapped error (a *iptables.Error) for errors.As but prints it on one line.
type oneLineError struct{ err error }

func (e *oneLineError) Error() string {
	var parts []string
	for _, line := range strings.Split(e.err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, "; ")
}

func (e *oneLineError) Unwrap() error { return e.err }

func oneLineErr(err error) error {
	if err == nil {
		return nil
	}
	return &oneLineError{err: err}
}
