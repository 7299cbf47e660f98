package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/codec"
)

func init() {
	register(&command{name: "call", short: "call a method with JSON arguments and print the JSON reply", run: runCall})
}

func runCall(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("call", "[flags] [ADDR] Service.Method ['{json args}']", stderr)
	timeout := fs.Duration("timeout", 10*time.Second, "give up on the call (and the connection) after this long")
	compact := fs.Bool("compact", false, "print the reply on one line")
	var tf tlsClientFlags
	tf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	addr, method, jsonArgs := DefaultAddr, "", "null"
	switch rest := fs.Args(); len(rest) {
	case 1:
		method = rest[0]
	case 2:
		if looksLikeMethod(rest[0]) && !looksLikeMethod(rest[1]) {
			method, jsonArgs = rest[0], rest[1]
		} else {
			addr, method = rest[0], rest[1]
		}
	case 3:
		addr, method, jsonArgs = rest[0], rest[1], rest[2]
	default:
		return usageError{"want [ADDR] Service.Method ['{json args}']"}
	}
	if !looksLikeMethod(method) {
		return usageError{fmt.Sprintf("%q is not a method name of the form Service.Method", method)}
	}
	if !json.Valid([]byte(jsonArgs)) {
		return usageError{fmt.Sprintf("arguments are not valid JSON: %s", jsonArgs)}
	}
	opts, err := tf.options()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c, err := dialForCommand(ctx, addr, append(opts, pulse.WithCodec(codec.JSONName))...)
	if err != nil {
		return err
	}
	defer c.Close()
	in := codec.RawMessage(jsonArgs)
	var out codec.RawMessage
	if err := c.Call(ctx, method, &in, &out); err != nil {
		return describeCallError(method, err)
	}
	var buf bytes.Buffer
	if *compact {
		err = json.Compact(&buf, out)
	} else {
		err = json.Indent(&buf, out, "", "  ")
	}
	if err != nil {
		buf.Reset()
		buf.Write(out)
	}
	buf.WriteByte('\n')
	_, err = stdout.Write(buf.Bytes())
	return err
}

func looksLikeMethod(s string) bool {
	dot := bytes.IndexByte([]byte(s), '.')
	return dot > 0 && dot < len(s)-1 && !bytes.ContainsAny([]byte(s), "{}[]\": ")
}

// dialForCommand connects for a one-shot command: the client fails fast
// instead of waiting to reconnect, and an unreachable server gets a clear
// message.
func dialForCommand(ctx context.Context, addr string, opts ...pulse.Option) (*pulse.Client, error) {
	c, err := pulse.Dial(ctx, addr, append([]pulse.Option{pulse.WithFailFast(), pulse.WithLogger(discardLogger)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %w", addr, err)
	}
	return c, nil
}

// describeCallError says what went wrong in words a command-line user
// can act on.
func describeCallError(method string, err error) error {
	var se pulse.ServerError
	var ce *pulse.ConnError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("%s returned an error: %s", method, string(se))
	case errors.Is(err, pulse.ErrUnknownService), errors.Is(err, pulse.ErrUnknownMethod):
		return fmt.Errorf("%w (the server does not serve %s)", err, method)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s timed out: %w", method, err)
	case errors.As(err, &ce):
		return fmt.Errorf("connection lost during %s: %w", method, err)
	}
	return err
}
