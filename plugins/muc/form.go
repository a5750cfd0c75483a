package muc

import (
	"slices"
	"strconv"

	"github.com/aviary-im/aviary/wire"
)

// The room configuration form (XEP-0045 §15.5.3, muc#roomconfig).

func field(v, label, typ string, values ...string) *wire.Element {
	f := wire.New("field", "var", v, "type", typ)
	if label != "" {
		f.SetAttr("label", label)
	}
	for _, x := range values {
		f.Append(wire.New("value").SetText(x))
	}
	return f
}

func hiddenField(v, value string) *wire.Element { return field(v, "", "hidden", value) }

func listField(v, label, value string, options ...string) *wire.Element {
	f := field(v, label, "list-single", value)
	for _, o := range options {
		f.Append(wire.New("option", "label", o).Append(wire.New("value").SetText(o)))
	}
	return f
}

func multiField(v, label string, values []string, options ...string) *wire.Element {
	f := field(v, label, "list-multi", values...)
	for _, o := range options {
		f.Append(wire.New("option", "label", o).Append(wire.New("value").SetText(o)))
	}
	return f
}

// configForm is the form an owner gets, filled with the room's values.
func (q *request) configForm() *wire.Element {
	r := q.r
	c := r.Config
	var owners, admins []string
	for _, j := range slicesSortedKeys(r.Affiliations) {
		switch r.Affiliations[j] {
		case affOwner:
			owners = append(owners, j)
		case affAdmin:
			admins = append(admins, j)
		}
	}
	x := wire.NewNS("x", NSData).SetAttr("type", "form")
	x.Append(wire.New("title").SetText("Configuration of " + r.jid(q.p)))
	x.Append(hiddenField("FORM_TYPE", NSRoomConfig))
	x.Append(field("muc#roomconfig_roomname", "Name", "text-single", c.Name))
	x.Append(field("muc#roomconfig_roomdesc", "Description", "text-single", c.Description))
	x.Append(field("muc#roomconfig_lang", "Language", "text-single", c.Lang))
	x.Append(field("muc#roomconfig_persistentroom", "Persistent", "boolean", boolStr(c.Persistent)))
	x.Append(field("muc#roomconfig_publicroom", "Listed in the directory", "boolean", boolStr(c.Public)))
	x.Append(field("muc#roomconfig_membersonly", "Members only", "boolean", boolStr(c.MembersOnly)))
	x.Append(field("muc#roomconfig_moderatedroom", "Moderated", "boolean", boolStr(c.Moderated)))
	x.Append(field("muc#roomconfig_passwordprotectedroom", "Password protected", "boolean", boolStr(c.Password != "")))
	x.Append(field("muc#roomconfig_roomsecret", "Password", "text-private", c.Password))
	mu := "0"
	if c.MaxUsers > 0 {
		mu = strconv.Itoa(c.MaxUsers)
	}
	x.Append(listField("muc#roomconfig_maxusers", "Most occupants (0: the service's limit)", mu, maxUsersOptions(c.MaxUsers)...))
	x.Append(listField("muc#roomconfig_whois", "Who may see real JIDs", c.WhoIs, "moderators", "anyone"))
	x.Append(field("muc#roomconfig_changesubject", "Occupants may change the subject", "boolean", boolStr(c.ChangeSubject)))
	x.Append(field("muc#roomconfig_allowinvites", "Occupants may invite", "boolean", boolStr(c.AllowInvites)))
	x.Append(listField("muc#roomconfig_allowpm", "Who may send private messages", c.AllowPM, "anyone", "participants", "moderators", "none"))
	x.Append(field("muc#roomconfig_enablelogging", "Public logging", "boolean", boolStr(c.Logging)))
	x.Append(field("muc#roomconfig_historylength", "Messages of history", "text-single", strconv.Itoa(c.HistoryLength)))
	if q.p.archive() != nil {
		x.Append(q.p.archiveExpiresField(c.ArchiveExpires))
	}
	x.Append(field("muc#roomconfig_changenick", "Occupants may change their nickname", "boolean", boolStr(c.ChangeNick)))
	x.Append(field("muc#roomconfig_voicerequests", "Visitors may request voice", "boolean", boolStr(c.VoiceRequests)))
	roles := []string{roleModerator, roleParticipant, roleVisitor}
	x.Append(multiField("muc#roomconfig_getmemberlist", "Roles that may get the member list", c.GetMemberList, roles...))
	x.Append(multiField("muc#roomconfig_presencebroadcast", "Roles whose presence is broadcast", c.PresenceRoles, roles...))
	x.Append(field("muc#roomconfig_roomowners", "Owners", "jid-multi", owners...))
	x.Append(field("muc#roomconfig_roomadmins", "Admins", "jid-multi", admins...))
	x.Append(field("muc#roomconfig_pubsub", "Node for room information", "text-single", c.PubSub))
	return x
}

// applyForm reads a submitted form over the room's configuration. Fields
// left out keep their value; a field of a wrong value is bad-request.
func (q *request) applyForm(x *wire.Element) (Config, []string, []string, error) {
	c := q.r.Config
	var owners, admins []string
	protected := c.Password != ""
	for _, f := range x.ChildrenNamed("field", "") {
		var vals []string
		for _, v := range f.ChildrenNamed("value", "") {
			vals = append(vals, v.AllText())
		}
		one := ""
		if len(vals) > 0 {
			one = vals[0]
		}
		bad := func() (Config, []string, []string, error) {
			return c, nil, nil, wire.ErrBadRequest.WithText("bad value for " + f.Attr("var"))
		}
		switch f.Attr("var") {
		case "FORM_TYPE":
			if one != "" && one != NSRoomConfig {
				return bad()
			}
		case "muc#roomconfig_roomname":
			c.Name = one
		case "muc#roomconfig_roomdesc":
			c.Description = one
		case "muc#roomconfig_lang":
			c.Lang = one
		case "muc#roomconfig_persistentroom":
			c.Persistent = parseBool(one)
		case "muc#roomconfig_publicroom":
			c.Public = parseBool(one)
		case "muc#roomconfig_membersonly":
			c.MembersOnly = parseBool(one)
		case "muc#roomconfig_moderatedroom":
			c.Moderated = parseBool(one)
		case "muc#roomconfig_passwordprotectedroom":
			protected = parseBool(one)
		case "muc#roomconfig_roomsecret":
			c.Password = one
		case "muc#roomconfig_maxusers":
			if one == "" || one == "none" {
				c.MaxUsers = 0
				break
			}
			n, err := strconv.Atoi(one)
			if err != nil || n < 0 {
				return bad()
			}
			c.MaxUsers = n
		case "muc#roomconfig_whois":
			if one != "moderators" && one != "anyone" {
				return bad()
			}
			c.WhoIs = one
		case "muc#roomconfig_changesubject":
			c.ChangeSubject = parseBool(one)
		case "muc#roomconfig_allowinvites":
			c.AllowInvites = parseBool(one)
		case "muc#roomconfig_allowpm":
			switch one {
			case "anyone", "participants", "moderators", "none":
				c.AllowPM = one
			default:
				return bad()
			}
		case "muc#roomconfig_enablelogging":
			c.Logging = parseBool(one)
		case "muc#roomconfig_historylength":
			n, err := strconv.Atoi(one)
			if err != nil || n < 0 {
				return bad()
			}
			c.HistoryLength = n
		case "muc#roomconfig_changenick":
			c.ChangeNick = parseBool(one)
		case "muc#roomconfig_voicerequests":
			c.VoiceRequests = parseBool(one)
		case "muc#roomconfig_getmemberlist":
			c.GetMemberList = onlyRoles(vals)
		case "muc#roomconfig_presencebroadcast":
			c.PresenceRoles = onlyRoles(vals)
		case "muc#roomconfig_pubsub":
			c.PubSub = one
		case fieldArchiveExpires:
			n, err := q.p.parseArchiveExpires(one)
			if err != nil {
				return c, nil, nil, err
			}
			c.ArchiveExpires = n
		case "muc#roomconfig_roomowners", "muc#roomconfig_roomadmins":
			bares, ok := bareJIDs(vals)
			if !ok {
				return bad()
			}
			if f.Attr("var") == "muc#roomconfig_roomowners" {
				owners = bares
			} else {
				admins = bares
			}
		}
	}
	if !protected {
		c.Password = ""
	}
	return c, owners, admins, nil
}

func onlyRoles(vals []string) []string {
	var out []string
	for _, v := range vals {
		if slices.Contains([]string{roleModerator, roleParticipant, roleVisitor}, v) && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// bareJIDs returns the bare JIDs of vals; false when one is not a JID.
func bareJIDs(vals []string) ([]string, bool) {
	var out []string
	for _, v := range vals {
		b := wire.JIDOf(v).Bare()
		if b == "" {
			return nil, false
		}
		out = append(out, b)
	}
	return out, true
}

// maxUsersOptions are the choices of muc#roomconfig_maxusers: small rooms
// one by one, then round numbers, and the current value.
func maxUsersOptions(cur int) []string {
	out := []string{"0"}
	for _, n := range []int{1, 2, 3, 4, 5, 10, 20, 30, 50, 100, 200, 500, 1000} {
		out = append(out, strconv.Itoa(n))
	}
	if c := strconv.Itoa(cur); cur > 0 && !slices.Contains(out, c) {
		out = append(out, c)
	}
	return out
}
