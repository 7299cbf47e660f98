//go:build !linux

package main

import "errors"

func limitAddressSpace(uint64) error {
	return errors.New("not supported on this system")
}
