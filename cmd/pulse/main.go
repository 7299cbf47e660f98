// Command pulse runs, calls and inspects Pulse servers.
//
// Usage:
//
//	pulse <command> [flags]
//
// The commands are:
//
//	bench   load a server and report calls/s and latency percentiles
//	call    call a method with JSON arguments and print the JSON reply
//	chat    join the chat room of a pulse serve
//	demo    the liveness scenario in one process: heartbeats, a dead peer
//	        detected within the bound, reconnects, pushes (about 8 s)
//	help    show help for a command
//	ping    heartbeat a server like ping(8)
//	serve   run a server with demo services
//
// Run "pulse help <command>" for a command's flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand of pulse.
type command struct {
	name  string
	short string
	run   func(args []string, stdout, stderr io.Writer) error
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" || name == "-help" {
		if len(args) > 1 {
			if c := commands[args[1]]; c != nil {
				c.run([]string{"-h"}, stdout, stdout)
				return 0
			}
			fmt.Fprintf(stderr, "pulse: unknown command %q\n", args[1])
			return 2
		}
		usage(stdout)
		return 0
	}
	c := commands[name]
	if c == nil {
		fmt.Fprintf(stderr, "pulse: unknown command %q\nRun 'pulse help' for usage.\n", name)
		return 2
	}
	err := c.run(args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "pulse %s: %v\n", name, err)
		return 2
	default:
		fmt.Fprintf(stderr, "pulse %s: %v\n", name, err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Pulse: RPC over long-lived connections with heartbeats.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "\tpulse <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The commands are:")
	fmt.Fprintln(w)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "\t%-8s %s\n", n, commands[n].short)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Use \"pulse help <command>\" for more information about a command.")
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name, usageLine string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pulse "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: pulse %s %s\n\nFlags:\n", name, usageLine)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

// optionalAddr returns the one address argument of a command, or
// DefaultAddr when there is none.
func optionalAddr(fs *flag.FlagSet) (string, error) {
	switch fs.NArg() {
	case 0:
		return DefaultAddr, nil
	case 1:
		return fs.Arg(0), nil
	}
	return "", usageError{fmt.Sprintf("want at most one address, got %q", fs.Args())}
}
