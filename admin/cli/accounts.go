package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// The account and session commands that need a running node (the admin
// API): locking an account closes its sessions on every node, which only a
// node can do; showing one reads the cluster's sessions.

// userViaAPI runs `aviary user lock|unlock|show NAME` against the admin API.
func userViaAPI(ctx context.Context, c *apiClient, sub, name string, asJSON bool, stdout io.Writer) error {
	path := "/api/users/" + pathEscape(name)
	switch sub {
	case "lock", "unlock":
		var res struct {
			Username string `json:"username"`
			Locked   bool   `json:"locked"`
			Closed   int    `json:"closed_sessions"`
		}
		if err := c.call(ctx, "POST", path+"/"+sub, nil, &res); err != nil {
			return err
		}
		if res.Locked {
			fmt.Fprintf(stdout, "locked %s: logins are refused on every node; %d session(s) closed\n", name, res.Closed)
		} else {
			fmt.Fprintf(stdout, "unlocked %s\n", name)
		}
		return nil
	}
	var raw json.RawMessage
	if err := c.call(ctx, "GET", path, nil, &raw); err != nil {
		return err
	}
	if asJSON {
		_, err := stdout.Write(append(raw, '\n'))
		return err
	}
	var u struct {
		JID      string    `json:"jid"`
		Created  time.Time `json:"created"`
		Locked   bool      `json:"locked"`
		LockedAt time.Time `json:"locked_at"`
		Roster   []struct {
			JID, Name, Subscription string
			Ask                     bool     `json:"ask"`
			PendingIn               bool     `json:"pending_in"`
			Groups                  []string `json:"groups"`
		} `json:"roster"`
		OfflineCount int `json:"offline_count"`
		Offline      []struct {
			Stored           time.Time
			From, Type, Body string
		} `json:"offline"`
		Sessions []apiSession `json:"sessions"`
	}
	if err := json.Unmarshal(raw, &u); err != nil {
		return err
	}
	fmt.Fprintln(stdout, u.JID)
	state := "active"
	if u.Locked {
		state = "locked since " + u.LockedAt.Format("2006-01-02 15:04 UTC") + " (logins refused)"
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  created\t%s\n", u.Created.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(tw, "  state\t%s\n", state)
	tw.Flush()
	fmt.Fprintf(stdout, "sessions (%d)\n", len(u.Sessions))
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, s := range u.Sessions {
		fmt.Fprintf(tw, "  %s\t%s\n", s.JID, s.summary())
	}
	tw.Flush()
	fmt.Fprintf(stdout, "roster (%d)\n", len(u.Roster))
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, r := range u.Roster {
		sub := r.Subscription
		if r.Ask {
			sub += ", asked"
		}
		if r.PendingIn {
			sub += ", wants to subscribe"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.JID, r.Name, sub, strings.Join(r.Groups, ", "))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "offline messages (%d)\n", u.OfflineCount)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, m := range u.Offline {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", m.Stored.Format("2006-01-02 15:04"), m.From, m.Type, oneLine(m.Body, 60))
	}
	return tw.Flush()
}

// apiSession is one entry of GET /api/sessions.
type apiSession struct {
	JID, Node, Transport, Addr string
	Priority                   int
	Available                  bool
	Since                      time.Time
	SM, Resumable, Detached    bool
	Unacked                    int
	Inactive                   bool
	Client                     *struct{ Software, Device, Tag, Caps string }
}

// client is what the client said about itself, or "".
func (s apiSession) client() string {
	if s.Client == nil {
		return ""
	}
	c := s.Client
	switch {
	case c.Software != "" && c.Device != "":
		return c.Software + " on " + c.Device
	case c.Software != "":
		return c.Software
	case c.Tag != "":
		return c.Tag
	}
	return c.Caps
}

// summary is the session on one line: node, transport, address, age,
// client, states.
func (s apiSession) summary() string {
	parts := []string{"on " + s.Node, s.Transport, s.Addr}
	if !s.Since.IsZero() {
		parts = append(parts, "since "+s.Since.Local().Format("15:04:05"))
	}
	if c := s.client(); c != "" {
		parts = append(parts, c)
	}
	if s.Detached {
		parts = append(parts, "waiting to resume")
	} else if s.SM {
		parts = append(parts, "sm")
	}
	if s.Inactive {
		parts = append(parts, "inactive")
	}
	return strings.Join(parts, ", ")
}

// showSession prints one session's details.
func showSession(ctx context.Context, c *apiClient, full string, asJSON bool, stdout io.Writer) error {
	var raw json.RawMessage
	if err := c.call(ctx, "GET", "/api/sessions/"+pathEscape(full), nil, &raw); err != nil {
		return err
	}
	if asJSON {
		_, err := stdout.Write(append(raw, '\n'))
		return err
	}
	var s apiSession
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\n", s.JID)
	fmt.Fprintf(tw, "  node\t%s\n", s.Node)
	fmt.Fprintf(tw, "  transport\t%s\n", s.Transport)
	fmt.Fprintf(tw, "  address\t%s\n", s.Addr)
	if !s.Since.IsZero() {
		fmt.Fprintf(tw, "  connected since\t%s (%s)\n", s.Since.Format("2006-01-02 15:04:05 UTC"), time.Since(s.Since).Round(time.Second))
	}
	client := s.client()
	if client == "" {
		client = "(not told)"
	}
	fmt.Fprintf(tw, "  client\t%s\n", client)
	sm := "off"
	if s.SM {
		sm = fmt.Sprintf("on, resumable %v, %d unacknowledged", s.Resumable, s.Unacked)
		if s.Detached {
			sm += ", waiting for the client to resume"
		}
	}
	fmt.Fprintf(tw, "  stream management\t%s\n", sm)
	csi := "active"
	if s.Inactive {
		csi = "inactive (XEP-0352)"
	}
	fmt.Fprintf(tw, "  client state\t%s\n", csi)
	pres := "unavailable"
	if s.Available {
		pres = fmt.Sprintf("available, priority %d", s.Priority)
	}
	fmt.Fprintf(tw, "  presence\t%s\n", pres)
	return tw.Flush()
}

// oneLine makes s one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
