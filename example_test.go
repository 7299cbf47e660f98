package pulse_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"

	"github.com/pulse-rpc/pulse"
)

// Calc is the service of the package documentation's tutorial (there named Arith).
type Calc struct{}

// CalcArgs are its arguments.
type CalcArgs struct{ A, B int }

func (Calc) Multiply(args *CalcArgs, reply *int) error {
	*reply = args.A * args.B
	return nil
}

func (Calc) Divide(ctx context.Context, args *CalcArgs, quo *int) error {
	if args.B == 0 {
		return errors.New("divide by zero")
	}
	*quo = args.A / args.B
	return nil
}

// The tutorial of the package documentation, on loopback: a server, a
// client, a blocking call, an asynchronous one and a method's error.
func Example() {
	srv, err := pulse.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Register(Calc{}); err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()

	ctx := context.Background()
	client, err := pulse.Dial(ctx, l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	var product int
	if err := client.Call(ctx, "Calc.Multiply", &CalcArgs{7, 8}, &product); err != nil {
		log.Fatal(err)
	}
	fmt.Println("7*8 =", product)

	quo := new(int)
	call := client.Go(ctx, "Calc.Divide", &CalcArgs{56, 8}, quo, nil)
	<-call.Done
	fmt.Println("56/8 =", *quo, call.Error)

	err = client.Call(ctx, "Calc.Divide", &CalcArgs{1, 0}, quo)
	var se pulse.ServerError
	fmt.Println(errors.As(err, &se), err)
	// Output:
	// 7*8 = 56
	// 56/8 = 7 <nil>
	// true divide by zero
}
