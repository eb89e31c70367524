package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"regexp"
	"strings"

	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

const policyAbout = "A tenant's policy decides which new flows its peers may open and which may reach " +
	"them: allow and deny rules in order, the first that matches decides, and a default for the rest. " +
	"Replies of an allowed flow always pass. 'popgate policy set --help' and README.md describe the file."

var policyCommands = []subcommand{
	{cmdSpec{
		name:  "policy show",
		usage: "policy show --tenant TENANT [--data-dir DIR]",
		about: "Print the policy of a tenant on stdout, as a policy file ready to edit and set again. " +
			"When the tenant never set one, it is the default policy, and the command says so on stderr.",
		example: "popgate policy show --tenant acme > acme.policy",
	}, (*app).policyShow},
	{cmdSpec{
		name:  "policy set",
		usage: "policy set --tenant TENANT [--data-dir DIR] FILE",
		about: "Replace the policy of a tenant with the policy file FILE (\"-\" reads stdin). The server " +
			"checks the whole file first: when something is wrong it changes nothing and every problem is " +
			"printed as FILE:LINE: what is wrong and how to fix it. Groups, peers and sites the tenant does " +
			"not have (yet) are no mistake: the policy is set, each is printed as FILE:LINE: warning: ..., and " +
			"its rules match nothing until the names exist. A new policy takes effect within a " +
			"second; flows it still allows keep running, the others are cut.\n\n" +
			"One statement per line, '#' starts a comment. 'default allow' or 'default deny' (deny when " +
			"left out) decides what no rule matches; a rule is 'allow|deny SOURCES -> DESTINATIONS " +
			"[tcp|udp|icmp|any [PORTS]]'. SOURCES and DESTINATIONS are \",\"-separated lists of any, " +
			"group:NAME, peer:NAME, site:NAME and CIDR prefixes or addresses; PORTS is a list of ports and " +
			"ranges such as 80,443,8000-8100.",
		example: "popgate policy set --tenant acme acme.policy\n" +
			"git show main:policies/acme.policy | popgate policy set --tenant acme -\n" +
			"\n" +
			"# acme.policy\n" +
			"default deny\n" +
			"allow group:eng -> 10.10.0.0/24, site:office tcp 80,443\n" +
			"allow group:eng -> group:servers icmp\n" +
			"allow any -> 0.0.0.0/0, ::/0          # the internet\n" +
			"allow site:office -> group:servers tcp 22",
		args: []string{"FILE"},
	}, (*app).policySet},
}

func (a *app) cmdPolicy(ctx context.Context, args []string) error {
	return a.group(ctx, "policy", policyAbout, policyCommands, args)
}

const policyTenantUsage = "`TENANT` whose policy it is (required)"

// policyDefaultHeader is set to "true" on a policy the tenant never set.
const policyDefaultHeader = "Popgate-Policy-Default"

func (a *app) policyShow(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant(policyTenantUsage)
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	if err := f.needTenant(); err != nil {
		return err
	}
	text, header, err := a.client(f).do(ctx, http.MethodGet, tenantPath(f.tenant)+"/policy", "", nil)
	if err != nil {
		return err
	}
	if len(text) > 0 && text[len(text)-1] != '\n' {
		text = append(text, '\n')
	}
	if _, err := a.stdout.Write(text); err != nil {
		return err
	}
	if header.Get(policyDefaultHeader) == "true" {
		a.note("tenant %s never set a policy: this is the default one; set one with 'popgate policy set --tenant %s FILE'", f.tenant, f.tenant)
	}
	return nil
}

func (a *app) policySet(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant(policyTenantUsage)
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := f.needTenant(); err != nil {
		return err
	}
	file := pos[0]
	if file == "-" {
		file = "<stdin>" // the name problems are reported under
	}
	text, err := a.readPolicyFile(pos[0], file)
	if err != nil {
		return err
	}
	path := tenantPath(f.tenant) + "/policy"
	data, _, err := a.client(f).do(ctx, http.MethodPut, path, "text/plain; charset=utf-8", bytes.NewReader(text))
	if e, ok := errors.AsType[*apiError](err); ok && (e.status == http.StatusBadRequest || policyProblem.MatchString(e.msg)) {
		a.printPolicyProblems(file, e.msg)
		return fmt.Errorf("policy of tenant %s not set: fix the problems above in %s and set it again", f.tenant, file)
	}
	if err != nil {
		return err
	}
	var set webui.APIPolicySet
	if err := decodeAnswer(http.MethodPut, path, data, &set); err != nil {
		return err
	}
	for _, w := range set.Warnings {
		if w.Line > 0 {
			a.note("%s:%d: warning: %s", file, w.Line, w.Message)
		} else {
			a.note("%s: warning: %s", file, w.Message)
		}
	}
	if len(set.Warnings) > 0 {
		a.note("policy of tenant %s set: %d rules, default %s; the names warned about above match nothing until they exist",
			f.tenant, set.Rules, set.Default)
		return nil
	}
	a.note("policy of tenant %s set: %d rules, default %s", f.tenant, set.Rules, set.Default)
	return nil
}

// readPolicyFile reads the policy file name, or stdin for "-", and calls it shown in
// messages. What keeps it from being sent at all (it cannot be read, is empty or too large)
// is a usage error.
func (a *app) readPolicyFile(name, shown string) ([]byte, error) {
	r := a.stdin
	if name != "-" {
		file, err := os.Open(name)
		if err != nil {
			return nil, usagef("cannot read policy file %s: %v", shown, pathError(err))
		}
		defer file.Close()
		r = file
	}
	// The server's limit, checked before sending: a larger file would only be cut off.
	text, err := io.ReadAll(io.LimitReader(r, store.MaxPolicySize+1))
	if err != nil {
		return nil, usagef("cannot read policy file %s: %v", shown, pathError(err))
	}
	if len(text) > store.MaxPolicySize {
		return nil, usagef("policy file %s is larger than %d MiB (%d bytes), the most a policy may be: say the same with fewer rules, using groups and CIDRs",
			shown, store.MaxPolicySize>>20, store.MaxPolicySize)
	}
	if len(bytes.TrimSpace(text)) == 0 {
		// Almost always a mistake (the wrong file, a pipe whose writer failed), and an empty
		// policy would deny every flow.
		return nil, usagef("policy file %s is empty: to deny every flow, write \"default deny\" in it", shown)
	}
	return text, nil
}

// pathError is the part of err a message naming the file still needs: "no such file or
// directory" rather than "open policy.txt: no such file or directory".
func pathError(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

// policyProblem matches one problem of a policy as the server lists them: "line 3: ...".
var policyProblem = regexp.MustCompile(`(?m)^line ([0-9]+): (.*)$`)

// printPolicyProblems prints the server's message about a policy file on stderr, one
// problem a line, as compilers do: "policy.txt:3: unknown protocol ...", "policy.txt: ..."
// for a problem that is about no line in particular.
func (a *app) printPolicyProblems(file, msg string) {
	var b strings.Builder
	for line := range strings.Lines(msg) {
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if m := policyProblem.FindStringSubmatch(line); m != nil {
			fmt.Fprintf(&b, "%s:%s: %s\n", file, m[1], m[2])
		} else {
			fmt.Fprintf(&b, "%s: %s\n", file, line)
		}
	}
	io.WriteString(a.stderr, b.String())
}
