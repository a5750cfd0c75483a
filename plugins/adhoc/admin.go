package adhoc

import (
	"context"
	"errors"
	"strconv"

	"github.com/aviary-im/aviary/plugins/internal/xmpputil"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// OnlineCounter is implemented by hosts that can count online users
// cluster-wide cheaply. Without it get-online-users-num asks
// Host.Resources for every account, which is fine for an admin command on
// a small domain and slow on a large one.
type OnlineCounter interface {
	OnlineUsers(ctx context.Context) (int, error)
}

// adminCommands are the XEP-0133 commands, run by p.
func adminCommands(p *Plugin) []Command {
	return []Command{
		{Node: NodeAddUser, Name: "Add a User", Form: addUserForm, Run: asAdmin(p.addUser)},
		{Node: NodeDeleteUser, Name: "Delete a User", Form: deleteUserForm, Run: asAdmin(p.deleteUsers)},
		{Node: NodeChangePassword, Name: "Change User Password", Form: changePasswordForm, Run: asAdmin(p.changePassword)},
		{Node: NodeEndUserSession, Name: "End User Session", Form: endSessionForm, Run: asAdmin(p.endSessions)},
		{Node: NodeRegisteredUsers, Name: "Get Number of Registered Users", Run: asAdmin(p.registeredUsers)},
		{Node: NodeOnlineUsers, Name: "Get Number of Online Users", Run: asAdmin(p.onlineUsers)},
	}
}

// asAdmin runs an administration command, which acts on the accounts its
// form names rather than on the administrator's.
func asAdmin(run func(context.Context, map[string][]string) (*wire.Element, error)) func(context.Context, string, map[string][]string) (*wire.Element, error) {
	return func(ctx context.Context, _ string, v map[string][]string) (*wire.Element, error) { return run(ctx, v) }
}

func addUserForm() *wire.Element {
	return dataForm("form", "Adding a User", "Fill out this form to add a user.",
		field("jid-single", "accountjid", "The Jabber ID for the account to be added", true),
		field("text-private", "password", "The password for this account", false),
		field("text-private", "password-verify", "Retype password", false),
		field("text-single", "email", "Email address", false),
		field("text-single", "given_name", "Given name", false),
		field("text-single", "surname", "Family name", false),
	)
}

func deleteUserForm() *wire.Element {
	return dataForm("form", "Deleting a User", "Fill out this form to delete a user.",
		field("jid-multi", "accountjids", "The Jabber ID(s) to delete", true),
	)
}

func changePasswordForm() *wire.Element {
	return dataForm("form", "Changing a User Password", "Fill out this form to change a user's password.",
		field("jid-single", "accountjid", "The Jabber ID for this account", true),
		field("text-private", "password", "The password for this account", true),
	)
}

func endSessionForm() *wire.Element {
	return dataForm("form", "Ending a User Session", "Fill out this form to end a user's session.",
		field("jid-multi", "accountjids", "The Jabber ID(s) for which to end sessions", true),
	)
}

// localUser returns the username of a bare JID of this domain.
func (p *Plugin) localUser(s string) (string, error) {
	j, err := wire.ParseJID(s)
	if err != nil || j.Local() == "" || j.Resource() != "" {
		return "", wire.ErrJIDMalformed.WithText("not a bare JID: " + s)
	}
	if j.Domain() != p.host.Domain() {
		return "", wire.ErrNotAcceptable.WithText(s + " is not an account of " + p.host.Domain())
	}
	return j.Local(), nil
}

func (p *Plugin) addUser(ctx context.Context, v map[string][]string) (*wire.Element, error) {
	user, err := p.localUser(first(v, "accountjid"))
	if err != nil {
		return nil, err
	}
	pw := first(v, "password")
	if pw == "" {
		return nil, wire.ErrNotAcceptable.WithText("a password is required")
	}
	if verify, ok := v["password-verify"]; ok && len(verify) > 0 && verify[0] != pw {
		return nil, wire.ErrNotAcceptable.WithText("the passwords do not match")
	}
	if err := xmpputil.CreateUser(ctx, p.host, user, pw); err != nil {
		switch err {
		case wire.ErrConflict:
			return nil, wire.ErrConflict.WithText("the account already exists")
		case wire.ErrNotAcceptable:
			return nil, wire.ErrNotAcceptable.WithText("the username or password is not acceptable")
		}
		return nil, err
	}
	p.host.Logger().Info("account added by admin command", "user", user)
	return nil, nil
}

// localUsers checks every JID of a form's accountjids field before the
// command acts on any of them.
func (p *Plugin) localUsers(jids []string) ([]string, error) {
	if len(jids) == 0 {
		return nil, wire.ErrNotAcceptable.WithText("no account given")
	}
	users := make([]string, 0, len(jids))
	for _, s := range jids {
		u, err := p.localUser(s)
		if err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	return users, nil
}

func (p *Plugin) deleteUsers(ctx context.Context, v map[string][]string) (*wire.Element, error) {
	users, err := p.localUsers(v["accountjids"])
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		if err := p.host.Users().DeleteUser(ctx, u); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return nil, wire.ErrItemNotFound.WithText("no account " + u)
			}
			return nil, err
		}
		p.host.Users().Kick(ctx, u+"@"+p.host.Domain(), "account deleted")
		p.host.Logger().Info("account deleted by admin command", "user", u)
	}
	return nil, nil
}

func (p *Plugin) changePassword(ctx context.Context, v map[string][]string) (*wire.Element, error) {
	user, err := p.localUser(first(v, "accountjid"))
	if err != nil {
		return nil, err
	}
	pw := first(v, "password")
	if pw == "" {
		return nil, wire.ErrNotAcceptable.WithText("a password is required")
	}
	if err := p.host.Users().SetPassword(ctx, user, pw); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, wire.ErrItemNotFound.WithText("no account " + user)
		}
		return nil, err
	}
	p.host.Logger().Info("password changed by admin command", "user", user)
	return nil, nil
}

func (p *Plugin) endSessions(ctx context.Context, v map[string][]string) (*wire.Element, error) {
	users, err := p.localUsers(v["accountjids"])
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		n := p.host.Users().Kick(ctx, u+"@"+p.host.Domain(), "session ended by an administrator")
		p.host.Logger().Info("sessions ended by admin command", "user", u, "sessions", n)
	}
	return nil, nil
}

func (p *Plugin) registeredUsers(ctx context.Context, v map[string][]string) (*wire.Element, error) {
	n, err := p.host.Store().CountUsers(ctx)
	if err != nil {
		return nil, err
	}
	return dataForm("result", "", "",
		field("", "registeredusersnum", "The number of registered users", false, strconv.Itoa(n))), nil
}

func (p *Plugin) onlineUsers(ctx context.Context, v map[string][]string) (*wire.Element, error) {
	n, err := p.countOnline(ctx)
	if err != nil {
		return nil, err
	}
	return dataForm("result", "", "",
		field("", "onlineusersnum", "The number of online users", false, strconv.Itoa(n))), nil
}

func (p *Plugin) countOnline(ctx context.Context) (int, error) {
	if oc, ok := p.host.(OnlineCounter); ok {
		return oc.OnlineUsers(ctx)
	}
	const page = 500
	n := 0
	for offset := 0; ; offset += page {
		users, err := p.host.Store().ListUsers(ctx, "", page, offset)
		if err != nil {
			return 0, err
		}
		for _, u := range users {
			res, err := p.host.Resources(ctx, u+"@"+p.host.Domain())
			if err != nil {
				return 0, err
			}
			if len(res) > 0 {
				n++
			}
		}
		if len(users) < page {
			return n, nil
		}
	}
}
