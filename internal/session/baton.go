//go:build !race

package session

// baton checks the hand-offs of a session's reader role in race builds
// (baton_race.go); elsewhere it is empty and its methods do nothing.
type baton struct{}

func (*baton) take()    {}
func (*baton) release() {}
func (*baton) pass()    {}
func (*baton) check()   {}
