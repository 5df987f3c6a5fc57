package main

import (
	"strings"
	"testing"
)

const prysm = `# prysm v6.1.4
[validator]
beacon-rest-api-provider cmd/validator/flags/flags.go:1
distributed cmd/validator/flags/flags.go:2
[accounts import]
keys-dir x:1
`

const nimbus = `[nimbus_validator_client]
beacon-node a:1
[nimbus_beacon_node deposits import]
data-dir a:2
`

func mustParse(t *testing.T, text string) Catalogue {
	t.Helper()
	c, err := ParseCatalogue("test.flags", text)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAcceptsKnownFlagsAndNamesTheMainCommand(t *testing.T) {
	c := mustParse(t, prysm)
	if c.Main != "validator" {
		t.Fatalf("main = %q", c.Main)
	}
	argv := []string{"/validator", "validator", "--distributed", "--beacon-rest-api-provider=http://x"}
	if err := Check(argv, []Catalogue{c}); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesAnUnknownFlagAndAnUnknownCommand(t *testing.T) {
	c := mustParse(t, prysm)
	err := Check([]string{"/validator", "validator", "--distributed", "--no-such-flag", "1"}, []Catalogue{c})
	if err == nil || !strings.Contains(err.Error(), "--no-such-flag") {
		t.Fatalf("err = %v", err)
	}
	if err := Check([]string{"/validator", "wallet", "destroy"}, []Catalogue{c}); err == nil {
		t.Fatal("an unknown subcommand was accepted")
	}
}

func TestSectionsNamedByTheProgramAndPositionalArguments(t *testing.T) {
	c := mustParse(t, nimbus)
	inv := Split([]string{"/home/user/nimbus_beacon_node", "deposits", "import", "--data-dir=/d", "/keys"}, c.Sections)
	if inv.Section != "nimbus_beacon_node deposits import" {
		t.Fatalf("section = %q", inv.Section)
	}
	inv = Split([]string{"/home/user/nimbus_validator_client", "--beacon-node=http://x"}, c.Sections)
	if inv.Section != "nimbus_validator_client" {
		t.Fatalf("section = %q", inv.Section)
	}
}

func TestNodeScriptIsOneProgram(t *testing.T) {
	c := mustParse(t, "[validator]\nbeacon-nodes a:1\n")
	inv := Split([]string{"node", "/usr/app/packages/cli/bin/lodestar", "validator", "--beacon-nodes", "http://x"}, c.Sections)
	if inv.Section != "validator" || len(inv.Flags) != 1 {
		t.Fatalf("inv = %+v", inv)
	}
}

func TestEveryCatalogueMustKnowTheFlag(t *testing.T) {
	old := mustParse(t, "[validator]\na x:1\n")
	newer := mustParse(t, "[validator]\na x:1\nb x:2\n")
	if err := Check([]string{"node", "s", "validator", "--b"}, []Catalogue{old, newer}); err == nil {
		t.Fatal("a flag missing from one catalogue was accepted")
	}
}
