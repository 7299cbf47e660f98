package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

func init() {
	register(&command{name: "chat", short: "join the chat room of a pulse serve: type lines, see everyone's", run: runChat})
}

// discardLogger keeps the library quiet in interactive commands.
var discardLogger = slog.New(slog.DiscardHandler)

// chatPrinter is the ChatClient a "pulse chat" registers: the server pushes
// every line said in the room to it.
type chatPrinter struct {
	mu  sync.Mutex
	out io.Writer
	me  string
	own chan struct{} // receives when one of this client's own lines comes back
}

// Message prints a pushed line.
func (p *chatPrinter) Message(line *ChatLine, _ *struct{}) error {
	p.mu.Lock()
	fmt.Fprintf(p.out, "<%s> %s\n", line.From, line.Text)
	p.mu.Unlock()
	if line.From == p.me {
		select {
		case p.own <- struct{}{}:
		default:
		}
	}
	return nil
}

// Whoami answers the server's callback with this client's name.
func (p *chatPrinter) Whoami(_ struct{}, reply *string) error {
	*reply = p.me
	return nil
}

func runChat(args []string, stdout, stderr io.Writer) error {
	return runChatFrom(os.Stdin, args, stdout, stderr)
}

func runChatFrom(stdin io.Reader, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("chat", "[flags] [ADDR]", stderr)
	name := fs.String("name", defaultChatName(), "your name in the room")
	var tf tlsClientFlags
	tf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	addr, err := optionalAddr(fs)
	if err != nil {
		return err
	}
	opts, err := tf.options()
	if err != nil {
		return err
	}
	ctx := context.Background()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := dialForCommand(dctx, addr, opts...)
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	p := &chatPrinter{out: stdout, me: *name, own: make(chan struct{}, 64)}
	if err := c.RegisterName("ChatClient", p); err != nil {
		return err
	}
	var n int
	if err := c.Call(ctx, "Chat.Join", &ChatJoin{Name: *name}, &n); err != nil {
		return describeCallError("Chat.Join", err)
	}
	fmt.Fprintf(stderr, "joined the room at %s as %s (%d in the room); type lines, end with Ctrl-D\n", addr, *name, n)
	said := 0
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		if err := c.Call(ctx, "Chat.Say", &ChatLine{Text: text}, &n); err != nil {
			return describeCallError("Chat.Say", err)
		}
		said++
	}
	// Wait (briefly) for this client's own lines to come back, so that
	// piped input shows the room's echo before exiting.
	for ; said > 0; said-- {
		select {
		case <-p.own:
		case <-time.After(2 * time.Second):
			return nil
		}
	}
	return sc.Err()
}

func defaultChatName() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "guest"
}
