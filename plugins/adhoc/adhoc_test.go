package adhoc_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/adhoc"
	"github.com/aviary-im/aviary/plugins/disco"
	"github.com/aviary-im/aviary/plugins/plugintest"
)

var sessionID = regexp.MustCompile(`sessionid="[0-9a-f]{16}"`)

const (
	admin    = "admin@example.com/console"
	formType = `<field type="hidden" var="FORM_TYPE"><value>http://jabber.org/protocol/admin</value></field>`
	addForm  = `<x xmlns="jabber:x:data" type="form"><title>Adding a User</title><instructions>Fill out this form to add a user.</instructions>` + formType +
		`<field type="jid-single" label="The Jabber ID for the account to be added" var="accountjid"><required/></field>` +
		`<field type="text-private" label="The password for this account" var="password"/>` +
		`<field type="text-private" label="Retype password" var="password-verify"/>` +
		`<field type="text-single" label="Email address" var="email"/>` +
		`<field type="text-single" label="Given name" var="given_name"/>` +
		`<field type="text-single" label="Family name" var="surname"/></x>`
	deleteForm = `<x xmlns="jabber:x:data" type="form"><title>Deleting a User</title><instructions>Fill out this form to delete a user.</instructions>` + formType +
		`<field type="jid-multi" label="The Jabber ID(s) to delete" var="accountjids"><required/></field></x>`
	actions = `<actions execute="complete"><complete/></actions>`
)

func dq(s string) string { return strings.ReplaceAll(s, "'", `"`) }

func submit(fields string) string {
	return `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/admin</value></field>` + fields + `</x>`
}

func TestAdminCommands(t *testing.T) {
	ctx := context.Background()
	h := plugintest.NewHost(t)
	h.Admin["admin@example.com"] = true
	m := h.Start(t, disco.New(), adhoc.New())
	if err := h.UserManager().CreateUser(ctx, "admin", "secret"); err != nil {
		t.Fatal(err)
	}
	h.SetOnline("admin@example.com", admin)

	cases := []struct {
		name string
		in   string
		want string
	}{
		{"command list for admin",
			`<iq type='get' id='d1' from='admin@example.com/console' to='example.com'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>`,
			`<iq type="result" id="d1" from="example.com" to="admin@example.com/console"><query xmlns="http://jabber.org/protocol/disco#items" node="http://jabber.org/protocol/commands">` +
				`<item jid="example.com" node="http://jabber.org/protocol/admin#add-user" name="Add a User"/>` +
				`<item jid="example.com" node="http://jabber.org/protocol/admin#change-user-password" name="Change User Password"/>` +
				`<item jid="example.com" node="http://jabber.org/protocol/admin#delete-user" name="Delete a User"/>` +
				`<item jid="example.com" node="http://jabber.org/protocol/admin#end-user-session" name="End User Session"/>` +
				`<item jid="example.com" node="http://jabber.org/protocol/admin#get-online-users-num" name="Get Number of Online Users"/>` +
				`<item jid="example.com" node="http://jabber.org/protocol/admin#get-registered-users-num" name="Get Number of Registered Users"/>` +
				`</query></iq>`},
		{"command list for others is empty",
			`<iq type='get' id='d2' from='joe@example.com/x' to='example.com'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>`,
			`<iq type="result" id="d2" from="example.com" to="joe@example.com/x"><query xmlns="http://jabber.org/protocol/disco#items" node="http://jabber.org/protocol/commands"/></iq>`},
		{"command node info",
			`<iq type='get' id='d3' from='admin@example.com/console' to='example.com'><query xmlns='http://jabber.org/protocol/disco#info' node='http://jabber.org/protocol/admin#add-user'/></iq>`,
			`<iq type="result" id="d3" from="example.com" to="admin@example.com/console"><query xmlns="http://jabber.org/protocol/disco#info" node="http://jabber.org/protocol/admin#add-user"><identity category="automation" type="command-node" name="Add a User"/><feature var="http://jabber.org/protocol/commands"/><feature var="jabber:x:data"/></query></iq>`},
		{"add-user form",
			`<iq type='set' id='a1' from='admin@example.com/console' to='example.com'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#add-user' action='execute'/></iq>`,
			`<iq type="result" id="a1" from="example.com" to="admin@example.com/console"><command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#add-user" sessionid="S" status="executing">` + actions + addForm + `</command></iq>`},
		{"add-user submit (execute, as Smack does)",
			`<iq type='set' id='a2' from='admin@example.com/console' to='example.com'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#add-user' sessionid='abc' action='execute'>` +
				submit(`<field var='accountjid'><value>smack1@example.com</value></field><field var='password'><value>pw1</value></field><field var='password-verify'><value>pw1</value></field>`) + `</command></iq>`,
			`<iq type="result" id="a2" from="example.com" to="admin@example.com/console"><command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#add-user" sessionid="abc" status="completed"/></iq>`},
		{"add-user submit (complete)",
			`<iq type='set' id='a3' from='admin@example.com/console' to='example.com'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#add-user' sessionid='abd' action='complete'>` +
				submit(`<field var='accountjid'><value>smack2@example.com</value></field><field var='password'><value>pw2</value></field><field var='password-verify'><value>pw2</value></field>`) + `</command></iq>`,
			`<iq type="result" id="a3" from="example.com" to="admin@example.com/console"><command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#add-user" sessionid="abd" status="completed"/></iq>`},
		{"add-user existing",
			`<iq type='set' id='a4' from='admin@example.com/console'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#add-user' sessionid='x'>` +
				submit(`<field var='accountjid'><value>smack1@example.com</value></field><field var='password'><value>pw</value></field>`) + `</command></iq>`,
			`<iq id="a4" to="admin@example.com/console" type="error"><command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#add-user" sessionid="x">` +
				dq(submit(`<field var='accountjid'><value>smack1@example.com</value></field><field var='password'><value>pw</value></field>`)) +
				`</command><error type="cancel"><conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">the account already exists</text></error></iq>`},
		{"add-user passwords differ",
			`<iq type='set' id='a5' from='admin@example.com/console'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#add-user'>` +
				submit(`<field var='accountjid'><value>smack3@example.com</value></field><field var='password'><value>a</value></field><field var='password-verify'><value>b</value></field>`) + `</command></iq>`,
			`<iq id="a5" to="admin@example.com/console" type="error"><command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#add-user">` +
				dq(submit(`<field var='accountjid'><value>smack3@example.com</value></field><field var='password'><value>a</value></field><field var='password-verify'><value>b</value></field>`)) +
				`</command><error type="modify"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">the passwords do not match</text></error></iq>`},
		{"add-user other domain",
			`<iq type='set' id='a6' from='admin@example.com/console'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#add-user'>` +
				submit(`<field var='accountjid'><value>x@other.org</value></field><field var='password'><value>a</value></field>`) + `</command></iq>`,
			`<iq id="a6" to="admin@example.com/console" type="error"><command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#add-user">` +
				dq(submit(`<field var='accountjid'><value>x@other.org</value></field><field var='password'><value>a</value></field>`)) +
				`</command><error type="modify"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">x@other.org is not an account of example.com</text></error></iq>`},
		{"registered users",
			`<iq type='set' id='n1' from='admin@example.com/console'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#get-registered-users-num' action='execute'/></iq>`,
			`<iq type="result" id="n1" to="admin@example.com/console"><command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#get-registered-users-num" sessionid="S" status="completed">` +
				`<x xmlns="jabber:x:data" type="result">` + formType + `<field label="The number of registered users" var="registeredusersnum"><value>3</value></field></x></command></iq>`},
		{"online users",
			`<iq type='set' id='n2' from='admin@example.com/console'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#get-online-users-num' action='execute'/></iq>`,
			`<iq type="result" id="n2" to="admin@example.com/console"><command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#get-online-users-num" sessionid="S" status="completed">` +
				`<x xmlns="jabber:x:data" type="result">` + formType + `<field label="The number of online users" var="onlineusersnum"><value>1</value></field></x></command></iq>`},
		{"change password",
			`<iq type='set' id='c1' from='admin@example.com/console'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#change-user-password' sessionid='s1'>` +
				submit(`<field var='accountjid'><value>smack2@example.com</value></field><field var='password'><value>changed</value></field>`) + `</command></iq>`,
			`<iq type="result" id="c1" to="admin@example.com/console"><command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#change-user-password" sessionid="s1" status="completed"/></iq>`},
		{"delete-user form",
			`<iq type='set' id='r1' from='admin@example.com/console'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#delete-user' action='execute'/></iq>`,
			`<iq type="result" id="r1" to="admin@example.com/console"><command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#delete-user" sessionid="S" status="executing">` + actions + deleteForm + `</command></iq>`},
		{"delete-user submit",
			`<iq type='set' id='r2' from='admin@example.com/console'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#delete-user' sessionid='s2' action='execute'>` +
				submit(`<field var='accountjids'><value>smack1@example.com</value><value>smack2@example.com</value></field>`) + `</command></iq>`,
			`<iq type="result" id="r2" to="admin@example.com/console"><command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#delete-user" sessionid="s2" status="completed"/></iq>`},
		{"end user session",
			`<iq type='set' id='e1' from='admin@example.com/console'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#end-user-session' sessionid='s4'>` +
				submit(`<field var='accountjids'><value>Admin@Example.com</value></field>`) + `</command></iq>`,
			`<iq type="result" id="e1" to="admin@example.com/console"><command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#end-user-session" sessionid="s4" status="completed"/></iq>`},
		{"cancel",
			`<iq type='set' id='x1' from='admin@example.com/console'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#delete-user' sessionid='s3' action='cancel'/></iq>`,
			`<iq type="result" id="x1" to="admin@example.com/console"><command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#delete-user" sessionid="s3" status="canceled"/></iq>`},
		{"non-admin is forbidden",
			`<iq type='set' id='f1' from='joe@example.com/x'><command xmlns='http://jabber.org/protocol/commands' node='http://jabber.org/protocol/admin#add-user' action='execute'/></iq>`,
			`<iq id="f1" to="joe@example.com/x" type="error"><command xmlns="http://jabber.org/protocol/commands" node="http://jabber.org/protocol/admin#add-user" action="execute"/><error type="auth"><forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
		{"unknown command",
			`<iq type='set' id='f2' from='admin@example.com/console'><command xmlns='http://jabber.org/protocol/commands' node='urn:nope' action='execute'/></iq>`,
			`<iq id="f2" to="admin@example.com/console" type="error"><command xmlns="http://jabber.org/protocol/commands" node="urn:nope" action="execute"/><error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := sessionID.ReplaceAllString(h.IQ(t, m, plugins.ToServer, c.in), `sessionid="S"`)
			if got != c.want {
				t.Errorf("reply\n got %s\nwant %s", got, c.want)
			}
		})
	}
	if _, ok := h.UserManager().Password("smack1"); ok {
		t.Error("smack1 still exists")
	}
	if h.UserManager().Kicked("smack2@example.com") != 1 {
		t.Error("deleted user's sessions were not closed")
	}
	if h.UserManager().Kicked("admin@example.com") != 1 {
		t.Error("end-user-session did not close the (normalized) account's sessions")
	}
	if _, ok := h.UserManager().Password("smack3"); ok {
		t.Error("smack3 created despite mismatched passwords")
	}
}
