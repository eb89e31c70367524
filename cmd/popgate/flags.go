package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// cmdSpec describes one leaf command for its help text and argument checks.
type cmdSpec struct {
	name    string   // as typed: "peer add"
	usage   string   // synopsis after "popgate ", e.g. "peer add --tenant TENANT NAME"
	about   string   // what it does, one or more sentences
	summary string   // one line for the group's help; "" for the first sentence of about
	example string   // one or more example lines
	args    []string // names of the positional arguments, all required
	// more: the last of args may be given more than once ("dns upstream set A B C").
	more bool
	// flagName, when set, names a string flag that may give the one positional argument
	// instead ("tenant set --tenant acme" as well as "tenant set acme").
	flagName string
}

// cmdFlags is the FlagSet of one command. It remembers the order flags were defined in and a
// note per flag (the environment variable of serve flags), for the help text.
type cmdFlags struct {
	spec  cmdSpec
	fs    *flag.FlagSet
	order []string
	notes map[string]string
}

func newCmdFlags(spec cmdSpec) *cmdFlags {
	fs := flag.NewFlagSet("popgate "+spec.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by app.run
	fs.Usage = func() {}
	return &cmdFlags{spec: spec, fs: fs, notes: map[string]string{}}
}

// The usage strings below follow package flag's convention: a `quoted` word names the value.

func (c *cmdFlags) String(p *string, name, value, usage string) {
	c.fs.StringVar(p, name, value, usage)
	c.order = append(c.order, name)
}

func (c *cmdFlags) Bool(p *bool, name string, usage string) {
	c.fs.BoolVar(p, name, false, usage)
	c.order = append(c.order, name)
}

func (c *cmdFlags) Var(v flag.Value, name, usage, note string) {
	c.fs.Var(v, name, usage)
	c.order = append(c.order, name)
	if note != "" {
		c.notes[name] = note
	}
}

// helpWidth is the width help texts are wrapped to.
const helpWidth = 92

// errHelp is returned by parse after it printed the help: the command succeeds doing nothing.
var errHelp = errors.New("help shown")

// parse parses args, flags and positional arguments in any order, and checks the number of
// positional arguments. "--" ends the flags. -h and --help print the help on w and return
// errHelp.
func (c *cmdFlags) parse(w io.Writer, args []string) ([]string, error) {
	var pos []string
	for {
		err := c.fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			c.printHelp(w)
			return nil, errHelp
		}
		if err != nil {
			return nil, usagef("%s: %s: see 'popgate %s --help'", c.spec.name, flagError(err), c.spec.name)
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if c.spec.flagName != "" && len(c.spec.args) == 1 {
		if v := c.fs.Lookup(c.spec.flagName); v != nil && v.Value.String() != "" {
			switch {
			case len(pos) == 0:
				pos = []string{v.Value.String()}
			case pos[0] != v.Value.String():
				return nil, usagef("%s: %s and --%s %s name different things: give one", c.spec.name, pos[0], c.spec.flagName, v.Value.String())
			}
		}
	}
	if len(pos) < len(c.spec.args) {
		missing := c.spec.args[len(pos)]
		return nil, usagef("%s: missing %s: usage: popgate %s", c.spec.name, missing, c.spec.usage)
	}
	if len(pos) > len(c.spec.args) && !c.spec.more {
		extra := pos[len(c.spec.args)]
		return nil, usagef("%s: unexpected argument %q: usage: popgate %s", c.spec.name, extra, c.spec.usage)
	}
	return pos, nil
}

// flagError rewords package flag's messages to the double-dash spelling of the help.
func flagError(err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Sprintf("unknown flag --%s", name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Sprintf("flag --%s needs a value", name)
	}
	return strings.Replace(msg, "for flag -", "for flag --", 1)
}

// isSet reports whether the flag name was given on the command line.
func (c *cmdFlags) isSet(name string) bool {
	set := false
	c.fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func (c *cmdFlags) printHelp(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: popgate %s\n\n%s\n", c.spec.usage, wrap(c.spec.about, helpWidth))
	b.WriteString("\nFlags:\n")
	type line struct{ left, right string }
	var lines []line
	width := 0
	for _, name := range append(c.order, "help") {
		left, right := "-h, --help", "show this help"
		if f := c.fs.Lookup(name); f != nil {
			arg, usage := flag.UnquoteUsage(f)
			left = "--" + name
			if arg != "" {
				left += " " + arg
			}
			right = usage
			if def := f.DefValue; def != "" && def != "false" && def != "0" && !strings.Contains(usage, "(default") {
				right += fmt.Sprintf(" (default: %s)", def)
			}
		}
		width = max(width, len(left))
		lines = append(lines, line{left, right})
		if note := c.notes[name]; note != "" {
			lines = append(lines, line{"", note})
		}
	}
	pad := strings.Repeat(" ", 2+width+2)
	for _, l := range lines {
		right := strings.ReplaceAll(wrap(l.right, max(40, helpWidth-len(pad))), "\n", "\n"+pad)
		fmt.Fprintf(&b, "  %-*s  %s\n", width, l.left, right)
	}
	fmt.Fprintf(&b, "\nExample:\n%s\n", indent(c.spec.example, "  "))
	io.WriteString(w, b.String())
}

// wrap breaks s into lines of at most n bytes at spaces, keeping blank lines (paragraphs).
func wrap(s string, n int) string {
	var out []string
	for para := range strings.SplitSeq(s, "\n") {
		line := ""
		for _, word := range strings.Fields(para) {
			if line != "" && len(line)+1+len(word) > n {
				out = append(out, line)
				line = ""
			}
			if line != "" {
				line += " "
			}
			line += word
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n")
}

// listFlag is a flag that may be repeated, each value a ","-separated list:
// --group eng,ops --group web gives [eng ops web].
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return errors.New("empty item in the list: separate items with single commas, e.g. a,b")
		}
		*l = append(*l, item)
	}
	return nil
}

// onOffFlag is a flag whose value is "on" or "off"; "" until set.
type onOffFlag string

func (o *onOffFlag) String() string { return string(*o) }

func (o *onOffFlag) Set(v string) error {
	if v != "on" && v != "off" {
		return errors.New("use on or off")
	}
	*o = onOffFlag(v)
	return nil
}

func (o *onOffFlag) on() bool { return *o == "on" }

// flowBoundFlag is a tenant's flow bound: 1 to 1048576, or "default" (sent as 0).
type flowBoundFlag struct {
	n   int
	set bool
}

func (b *flowBoundFlag) String() string {
	if !b.set {
		return ""
	}
	if b.n == 0 {
		return "default"
	}
	return strconv.Itoa(b.n)
}

func (b *flowBoundFlag) Set(v string) error {
	if v == "default" {
		b.n, b.set = 0, true
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1<<20 {
		return errors.New("use a number of flows from 1 to 1048576, or default")
	}
	b.n, b.set = n, true
	return nil
}

// value is the bound for the API: 0 for the default.
func (b *flowBoundFlag) value() *int { return &b.n }
