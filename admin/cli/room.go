package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
)

func init() {
	Register(Command{Name: "room", Summary: "list and destroy group chat rooms (admin API)", Run: func(args []string) int {
		return runRoom(context.Background(), args, os.Environ(), os.Stdout, os.Stderr)
	}})
}

// apiRoom is a room as GET /api/rooms returns it.
type apiRoom struct {
	JID, Name, Node, Subject string
	Occupants                int
	Public                   bool
	Persistent               bool
	People                   []struct{ Nick, Role, Affiliation string }
}

func runRoom(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	usage := "usage: aviary room <list | destroy ROOMJID [--reason TEXT]> [--admin URL] [--token T]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("aviary room "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af apiFlags
	af.register(fs)
	reason := fs.String("reason", "", "destroy: what the occupants are told")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return 2
	}
	c, err := af.client(environ)
	if err != nil {
		fmt.Fprintln(stderr, "aviary room:", err)
		return 2
	}
	switch {
	case args[0] == "list" && len(pos) == 0:
		var res struct {
			Available bool
			Message   string
			Rooms     []apiRoom
		}
		if err = c.call(ctx, "GET", "/api/rooms", nil, &res); err == nil {
			if !res.Available {
				fmt.Fprintln(stdout, res.Message)
				break
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROOM\tNAME\tNODE\tOCCUPANTS\tKIND\tWHO")
			for _, r := range res.Rooms {
				kind := "temporary"
				if r.Persistent {
					kind = "persistent"
				}
				if r.Public {
					kind += ",public"
				}
				var who []string
				for _, p := range r.People {
					who = append(who, p.Nick+" ("+p.Role+")")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.JID, r.Name, r.Node, r.Occupants, kind, strings.Join(who, ", "))
			}
			tw.Flush()
		}
	case args[0] == "destroy" && len(pos) == 1:
		path := "/api/rooms/" + pathEscape(pos[0])
		if *reason != "" {
			path += "?reason=" + url.QueryEscape(*reason)
		}
		if err = c.call(ctx, "DELETE", path, nil, nil); err == nil {
			fmt.Fprintf(stdout, "destroyed %s\n", pos[0])
		}
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "aviary room %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
