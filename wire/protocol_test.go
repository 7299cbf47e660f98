package wire_test

import (
	"os"
	"strings"
	"testing"
)

// TestProtocolDocExample keeps the hex dump in PROTOCOL.md equal to what
// the code produces (see Example_exchange).
func TestProtocolDocExample(t *testing.T) {
	doc, err := os.ReadFile("PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	dump := strings.TrimSuffix(exchange(), "\n")
	if !strings.Contains(string(doc), "```\n"+dump+"```\n") {
		t.Errorf("PROTOCOL.md does not contain the output of exchange() in a code block; update it to:\n%s", dump)
	}
}
