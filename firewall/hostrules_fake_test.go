package firewall

import (
	"fmt"
	"slices"
	"strings"
)

var _ iptablesAPI = (*fakeIPTables)(nil)

// fakeIPTables is an in-memory iptables for one family: the filter and nat tables with their
// built-in chains, user chains, and ordered rules kept as the strings `iptables -S` prints.
// It refuses what iptables refuses where HostRules could get it wrong: jumps to missing
// chains, MASQUERADE outside nat, deleting a chain that is built in, not empty or jumped to,
// inserting past the end, deleting a rule that is not there. It does not canonicalise rule
// specs: the netns test checks that ours are spelt as iptables prints them.
type fakeIPTables struct {
	tables map[string]*fakeTable
	// failAt, when > 0, fails the failAt'th changing call (counting from 1) with failErr
	// before it changes anything; failAt counts down as changing calls are made.
	failAt  int
	failErr error
	// changes counts the calls that change rules or chains.
	changes int
	// denyErr, when set, fails every call, as iptables does without CAP_NET_ADMIN.
	denyErr error
}

type fakeTable struct {
	builtin []string // built-in chains in the order iptables lists them
	chains  map[string]*fakeChain
}

type fakeChain struct {
	builtin bool
	rules   []string // rule specs joined by spaces, without "-A chain"
}

func newFakeIPTables() *fakeIPTables {
	f := &fakeIPTables{tables: map[string]*fakeTable{}}
	for name, builtin := range map[string][]string{
		"filter": {"INPUT", "FORWARD", "OUTPUT"},
		"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	} {
		t := &fakeTable{builtin: builtin, chains: map[string]*fakeChain{}}
		for _, c := range builtin {
			t.chains[c] = &fakeChain{builtin: true}
		}
		f.tables[name] = t
	}
	return f
}

// fakeError mimics a failed iptables command.
type fakeError struct{ msg string }

func (e *fakeError) Error() string { return e.msg }

func fakeErrorf(format string, args ...any) error {
	return &fakeError{msg: fmt.Sprintf(format, args...)}
}

func (f *fakeIPTables) table(name string) (*fakeTable, error) {
	if f.denyErr != nil {
		return nil, f.denyErr
	}
	t, ok := f.tables[name]
	if !ok {
		return nil, fakeErrorf("iptables: table '%s' does not exist", name)
	}
	return t, nil
}

func (f *fakeIPTables) chain(table, chain string) (*fakeTable, *fakeChain, error) {
	t, err := f.table(table)
	if err != nil {
		return nil, nil, err
	}
	c, ok := t.chains[chain]
	if !ok {
		return nil, nil, fakeErrorf("iptables: No chain/target/match by that name.")
	}
	return t, c, nil
}

// change counts a changing call and fails it when failAt says so.
func (f *fakeIPTables) change() error {
	f.changes++
	if f.failAt > 0 {
		f.failAt--
		if f.failAt == 0 {
			return f.failErr
		}
	}
	return nil
}

// fakeJumpTarget returns the -j target of a rule spec, or "".
func fakeJumpTarget(rulespec []string) string {
	i := slices.Index(rulespec, "-j")
	if i < 0 || i+1 >= len(rulespec) {
		return ""
	}
	return rulespec[i+1]
}

// fakeCheckTarget refuses a rule whose -j target is neither standard nor a chain of the table.
func fakeCheckTarget(table string, t *fakeTable, rulespec []string) error {
	switch target := fakeJumpTarget(rulespec); target {
	case "", "ACCEPT", "DROP", "RETURN", "REJECT", "LOG":
		return nil
	case "MASQUERADE":
		if table != "nat" {
			return fakeErrorf("iptables: MASQUERADE target: only valid in nat table")
		}
		return nil
	default:
		if c, ok := t.chains[target]; !ok || c.builtin {
			return fakeErrorf("iptables: Couldn't load target `%s':No such file or directory", target)
		}
		return nil
	}
}

func (f *fakeIPTables) ChainExists(table, chain string) (bool, error) {
	t, err := f.table(table)
	if err != nil {
		return false, err
	}
	_, ok := t.chains[chain]
	return ok, nil
}

func (f *fakeIPTables) ClearChain(table, chain string) error {
	t, err := f.table(table)
	if err != nil {
		return err
	}
	if err := f.change(); err != nil {
		return err
	}
	if c, ok := t.chains[chain]; ok {
		c.rules = nil
	} else {
		t.chains[chain] = &fakeChain{}
	}
	return nil
}

func (f *fakeIPTables) DeleteChain(table, chain string) error {
	t, c, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	switch {
	case c.builtin:
		return fakeErrorf("iptables: Can't delete built-in chain %s", chain)
	case len(c.rules) > 0:
		return fakeErrorf("iptables: Directory not empty.")
	}
	for _, other := range t.chains {
		for _, r := range other.rules {
			if fakeJumpTarget(strings.Fields(r)) == chain {
				return fakeErrorf("iptables: CHAIN_DEL failed (Device or resource busy): chain %s", chain)
			}
		}
	}
	if err := f.change(); err != nil {
		return err
	}
	delete(t.chains, chain)
	return nil
}

func (f *fakeIPTables) Insert(table, chain string, pos int, rulespec ...string) error {
	t, c, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	if pos < 1 || pos > len(c.rules)+1 {
		return fakeErrorf("iptables: Index of insertion too big.")
	}
	if err := fakeCheckTarget(table, t, rulespec); err != nil {
		return err
	}
	if err := f.change(); err != nil {
		return err
	}
	c.rules = slices.Insert(c.rules, pos-1, strings.Join(rulespec, " "))
	return nil
}

func (f *fakeIPTables) Append(table, chain string, rulespec ...string) error {
	t, c, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	if err := fakeCheckTarget(table, t, rulespec); err != nil {
		return err
	}
	if err := f.change(); err != nil {
		return err
	}
	c.rules = append(c.rules, strings.Join(rulespec, " "))
	return nil
}

func (f *fakeIPTables) Delete(table, chain string, rulespec ...string) error {
	_, c, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	i := slices.Index(c.rules, strings.Join(rulespec, " "))
	if i < 0 {
		return fakeErrorf("iptables: Bad rule (does a matching rule exist in that chain?).")
	}
	if err := f.change(); err != nil {
		return err
	}
	c.rules = slices.Delete(c.rules, i, i+1)
	return nil
}

func (f *fakeIPTables) List(table, chain string) ([]string, error) {
	_, c, err := f.chain(table, chain)
	if err != nil {
		return nil, err
	}
	return fakeListChain(chain, c), nil
}

func fakeListChain(name string, c *fakeChain) []string {
	head := "-N " + name
	if c.builtin {
		head = "-P " + name + " ACCEPT"
	}
	out := []string{head}
	for _, r := range c.rules {
		out = append(out, "-A "+name+" "+r)
	}
	return out
}

// dump is what `iptables -t table -S` prints: the policies of the built-in chains, the user
// chains by name, then the rules of the built-in chains and of the user chains in that order.
func (f *fakeIPTables) dump(table string) []string {
	t := f.tables[table]
	var user []string
	for name, c := range t.chains {
		if !c.builtin {
			user = append(user, name)
		}
	}
	slices.Sort(user)
	var out []string
	for _, name := range t.builtin {
		out = append(out, "-P "+name+" ACCEPT")
	}
	for _, name := range user {
		out = append(out, "-N "+name)
	}
	for _, name := range append(slices.Clone(t.builtin), user...) {
		out = append(out, fakeListChain(name, t.chains[name])[1:]...)
	}
	return out
}
