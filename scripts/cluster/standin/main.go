// Command standin stands in for a validator client whose image no registry reachable here
// ships. It is honest about what it is: it checks its command line against the client's flag
// catalogue (read from the client's source by scripts/read-client-flags.py), refuses any
// subcommand or flag the real client does not have, and otherwise stays up (the client's main
// command) or exits 0 (an init step's command). It signs nothing and serves no API.
//
// The catalogues are the *.flags files in STANDIN_CATALOGUES (default /standin); when there are
// several (nearest readable tags either side of the pinned one) a flag must be in each.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Catalogue is one client's flags: section (subcommand words, e.g. "account validator import")
// to the set of flag names. Main is the first section: the client's long-running command.
type Catalogue struct {
	Source   string
	Main     string
	Sections map[string]map[string]bool
}

// ParseCatalogue reads the format written by scripts/read-client-flags.py: comment lines (#),
// section headers ([words]), and one flag per line (name, then where it is defined).
func ParseCatalogue(source, text string) (Catalogue, error) {
	c := Catalogue{Source: source, Sections: map[string]map[string]bool{}}
	section := ""
	scanner := bufio.NewScanner(strings.NewReader(text))
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.TrimSpace(line[1 : len(line)-1])
			if c.Main == "" {
				c.Main = section
			}
			c.Sections[section] = map[string]bool{}
		case section == "":
			return c, fmt.Errorf("%s: flag %q before any section", source, line)
		default:
			c.Sections[section][strings.Fields(line)[0]] = true
		}
	}
	if c.Main == "" {
		return c, fmt.Errorf("%s: no section", source)
	}
	return c, scanner.Err()
}

// Invocation is a command line split as the catalogues see it.
type Invocation struct {
	Section string
	Flags   []string
}

// Split reads argv (program first) into its section and flag names. The section is the
// subcommand words before the first flag, preceded by the program's own name when a catalogue
// names its sections that way (Nimbus: "nimbus_beacon_node deposits import"). `node SCRIPT`
// (Lodestar) is one program.
func Split(argv []string, sections map[string]map[string]bool) Invocation {
	args := argv[1:]
	program := filepath.Base(argv[0])
	if program == "node" && len(args) > 0 {
		program = filepath.Base(args[0])
		args = args[1:]
	}
	var words []string
	i := 0
	for ; i < len(args) && !strings.HasPrefix(args[i], "-"); i++ {
		words = append(words, args[i])
	}
	section := strings.Join(words, " ")
	// Positional arguments may follow the subcommand (a file name): the longest known prefix
	// of the words names the section; the program alone only when no word follows it.
	lowest := 1
	if len(words) == 0 {
		lowest = 0
	}
	for n := len(words); n >= lowest; n-- {
		for _, candidate := range []string{strings.Join(words[:n], " "), strings.TrimSpace(program + " " + strings.Join(words[:n], " "))} {
			if _, ok := sections[candidate]; ok {
				section = candidate
				n = -1
				break
			}
		}
	}
	var flags []string
	for _, arg := range args[i:] {
		if !strings.HasPrefix(arg, "-") || arg == "-" || arg == "--" {
			continue // a flag's value or a positional argument
		}
		name := strings.TrimLeft(arg, "-")
		name, _, _ = strings.Cut(name, "=")
		flags = append(flags, name)
	}
	return Invocation{Section: section, Flags: flags}
}

// Check says what the real client would refuse: an unknown subcommand or flag, per catalogue.
func Check(argv []string, catalogues []Catalogue) error {
	for _, c := range catalogues {
		inv := Split(argv, c.Sections)
		known, ok := c.Sections[inv.Section]
		if !ok {
			return fmt.Errorf("unknown command %q (not in %s)", inv.Section, c.Source)
		}
		var unknown []string
		for _, flag := range inv.Flags {
			if !known[flag] {
				unknown = append(unknown, "--"+flag)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return fmt.Errorf("unknown flags for %q: %s (not in %s)", inv.Section, strings.Join(unknown, " "), c.Source)
		}
	}
	return nil
}

func loadCatalogues(dir string) ([]Catalogue, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.flags"))
	if err != nil || len(paths) == 0 {
		return nil, fmt.Errorf("no flag catalogue in %s", dir)
	}
	sort.Strings(paths)
	var catalogues []Catalogue
	for _, path := range paths {
		text, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		c, err := ParseCatalogue(filepath.Base(path), string(text))
		if err != nil {
			return nil, err
		}
		catalogues = append(catalogues, c)
	}
	return catalogues, nil
}

func main() {
	dir := os.Getenv("STANDIN_CATALOGUES")
	if dir == "" {
		dir = "/standin"
	}
	catalogues, err := loadCatalogues(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "standin:", err)
		os.Exit(2)
	}
	if err := Check(os.Args, catalogues); err != nil {
		fmt.Fprintln(os.Stderr, "standin (not the real client):", err)
		os.Exit(2)
	}
	inv := Split(os.Args, catalogues[0].Sections)
	fmt.Fprintf(os.Stderr, "standin (not the real client): %q accepted with %d flags\n", inv.Section, len(inv.Flags))
	if inv.Section != catalogues[0].Main {
		return
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
