package pubsub

import (
	"slices"
	"strconv"
	"strings"

	"github.com/aviary-im/aviary/wire"
)

// Access models (pubsub#access_model). XEP-0060's "authorize" (the owner
// approves each subscriber) is not offered.
const (
	AccessOpen      = "open"
	AccessPresence  = "presence"
	AccessRoster    = "roster"
	AccessWhitelist = "whitelist"
)

// Publish models (pubsub#publish_model).
const (
	PublishPublishers  = "publishers"
	PublishSubscribers = "subscribers"
	PublishOpen        = "open"
)

// When the last published item goes to a new subscriber
// (pubsub#send_last_published_item).
const (
	SendLastNever         = "never"
	SendLastOnSub         = "on_sub"
	SendLastOnSubPresence = "on_sub_and_presence"
)

// Config is a node's configuration (XEP-0060 §16.4.3, the
// pubsub#node_config form). The zero value is not a usable configuration:
// services start from their Options.Defaults.
type Config struct {
	Title       string
	Description string
	// Type is the namespace of the node's payloads (pubsub#type), "" when
	// any.
	Type         string
	AccessModel  string
	RosterGroups []string // pubsub#roster_groups_allowed, for AccessRoster
	PublishModel string
	// MaxItems is how many items the node keeps, the oldest evicted
	// first; 0 is "max": as many as the owner's storage quota allows.
	MaxItems             int
	PersistItems         bool
	DeliverPayloads      bool
	DeliverNotifications bool
	NotifyConfig         bool
	NotifyDelete         bool
	NotifyRetract        bool
	// Subscribe tells whether entities may subscribe (pubsub#subscribe).
	Subscribe bool
	// NotificationType is "headline" or "normal": the type of the
	// <message/> notifications.
	NotificationType      string
	SendLastPublishedItem string
	// MaxPayloadSize bounds an item's payload in bytes; 0 leaves it to the
	// stanza size limit.
	MaxPayloadSize int
}

// Form field names of the node configuration.
const (
	fieldFormType       = "FORM_TYPE"
	fieldTitle          = "pubsub#title"
	fieldDescription    = "pubsub#description"
	fieldType           = "pubsub#type"
	fieldAccessModel    = "pubsub#access_model"
	fieldRosterGroups   = "pubsub#roster_groups_allowed"
	fieldPublishModel   = "pubsub#publish_model"
	fieldMaxItems       = "pubsub#max_items"
	fieldPersistItems   = "pubsub#persist_items"
	fieldDeliverPayload = "pubsub#deliver_payloads"
	fieldDeliverNotif   = "pubsub#deliver_notifications"
	fieldNotifyConfig   = "pubsub#notify_config"
	fieldNotifyDelete   = "pubsub#notify_delete"
	fieldNotifyRetract  = "pubsub#notify_retract"
	fieldSubscribe      = "pubsub#subscribe"
	fieldNotifType      = "pubsub#notification_type"
	fieldSendLast       = "pubsub#send_last_published_item"
	fieldMaxPayload     = "pubsub#max_payload_size"
)

// FormTypeNodeConfig is the FORM_TYPE of node configuration forms.
const FormTypeNodeConfig = NS + "#node_config"

// formError is what applying a form returns for a bad value: which field.
type formError struct{ field, why string }

// Error is the text clients get: the field and what is wrong with it.
func (e *formError) Error() string { return e.field + ": " + e.why }

// setField applies one form field to c. Unknown fields are ignored (a
// client may send fields of a newer XEP-0060 than ours); a known field
// with a value outside its range is an error naming it.
func (c *Config) setField(name string, values []string) error {
	one := ""
	if len(values) > 0 {
		one = strings.TrimSpace(values[0])
	}
	bad := func(why string) error { return &formError{name, why} }
	boolean := func(dst *bool) error {
		v, ok := parseBool(one)
		if !ok {
			return bad("not a boolean: " + one)
		}
		*dst = v
		return nil
	}
	choice := func(dst *string, allowed ...string) error {
		if !slices.Contains(allowed, one) {
			return bad("unsupported value " + strconv.Quote(one))
		}
		*dst = one
		return nil
	}
	switch name {
	case fieldTitle:
		c.Title = one
	case fieldDescription:
		c.Description = one
	case fieldType:
		c.Type = one
	case fieldAccessModel:
		return choice(&c.AccessModel, AccessOpen, AccessPresence, AccessRoster, AccessWhitelist)
	case fieldRosterGroups:
		c.RosterGroups = nil
		for _, v := range values {
			if v = strings.TrimSpace(v); v != "" && !slices.Contains(c.RosterGroups, v) {
				c.RosterGroups = append(c.RosterGroups, v)
			}
		}
	case fieldPublishModel:
		return choice(&c.PublishModel, PublishPublishers, PublishSubscribers, PublishOpen)
	case fieldMaxItems:
		n, ok := parseMaxItems(one)
		if !ok {
			return bad("not a positive number or \"max\": " + one)
		}
		c.MaxItems = n
	case fieldPersistItems:
		return boolean(&c.PersistItems)
	case fieldDeliverPayload:
		return boolean(&c.DeliverPayloads)
	case fieldDeliverNotif:
		return boolean(&c.DeliverNotifications)
	case fieldNotifyConfig:
		return boolean(&c.NotifyConfig)
	case fieldNotifyDelete:
		return boolean(&c.NotifyDelete)
	case fieldNotifyRetract:
		return boolean(&c.NotifyRetract)
	case fieldSubscribe:
		return boolean(&c.Subscribe)
	case fieldNotifType:
		return choice(&c.NotificationType, "headline", "normal")
	case fieldSendLast:
		return choice(&c.SendLastPublishedItem, SendLastNever, SendLastOnSub, SendLastOnSubPresence)
	case fieldMaxPayload:
		n, err := strconv.Atoi(one)
		if err != nil || n < 0 {
			return bad("not a number: " + one)
		}
		c.MaxPayloadSize = n
	}
	return nil
}

// fieldValue renders one known field's value(s) as they appear in forms;
// ok is false for a field Config does not have.
func (c *Config) fieldValue(name string) (values []string, ok bool) {
	b := func(v bool) []string { return []string{formatBool(v)} }
	switch name {
	case fieldTitle:
		return []string{c.Title}, true
	case fieldDescription:
		return []string{c.Description}, true
	case fieldType:
		return []string{c.Type}, true
	case fieldAccessModel:
		return []string{c.AccessModel}, true
	case fieldRosterGroups:
		return c.RosterGroups, true
	case fieldPublishModel:
		return []string{c.PublishModel}, true
	case fieldMaxItems:
		return []string{formatMaxItems(c.MaxItems)}, true
	case fieldPersistItems:
		return b(c.PersistItems), true
	case fieldDeliverPayload:
		return b(c.DeliverPayloads), true
	case fieldDeliverNotif:
		return b(c.DeliverNotifications), true
	case fieldNotifyConfig:
		return b(c.NotifyConfig), true
	case fieldNotifyDelete:
		return b(c.NotifyDelete), true
	case fieldNotifyRetract:
		return b(c.NotifyRetract), true
	case fieldSubscribe:
		return b(c.Subscribe), true
	case fieldNotifType:
		return []string{c.NotificationType}, true
	case fieldSendLast:
		return []string{c.SendLastPublishedItem}, true
	case fieldMaxPayload:
		return []string{strconv.Itoa(c.MaxPayloadSize)}, true
	}
	return nil, false
}

// formFields lists the configuration form's fields in the order shown,
// with their type, label and options.
var formFields = []struct {
	name, typ, label string
	options          []string
}{
	{fieldTitle, "text-single", "A friendly name for the node", nil},
	{fieldDescription, "text-single", "A description of the node", nil},
	{fieldType, "text-single", "The namespace of the node's payloads", nil},
	{fieldAccessModel, "list-single", "Who may subscribe and retrieve items", []string{AccessOpen, AccessPresence, AccessRoster, AccessWhitelist}},
	{fieldRosterGroups, "list-multi", "Roster groups allowed to subscribe (access model roster)", nil},
	{fieldPublishModel, "list-single", "Who may publish", []string{PublishPublishers, PublishSubscribers, PublishOpen}},
	{fieldMaxItems, "text-single", "Items kept (a number, or max)", nil},
	{fieldPersistItems, "boolean", "Persist items", nil},
	{fieldDeliverPayload, "boolean", "Deliver payloads with event notifications", nil},
	{fieldDeliverNotif, "boolean", "Deliver event notifications", nil},
	{fieldNotifyConfig, "boolean", "Notify subscribers when the configuration changes", nil},
	{fieldNotifyDelete, "boolean", "Notify subscribers when the node is deleted", nil},
	{fieldNotifyRetract, "boolean", "Notify subscribers when items are removed", nil},
	{fieldSubscribe, "boolean", "Allow subscriptions", nil},
	{fieldNotifType, "list-single", "Message type of event notifications", []string{"headline", "normal"}},
	{fieldSendLast, "list-single", "When to send the last published item", []string{SendLastNever, SendLastOnSub, SendLastOnSubPresence}},
	{fieldMaxPayload, "text-single", "Largest payload in bytes (0: the stanza limit)", nil},
}

// Form renders the configuration as a data form of the given type
// ("form" for a configure or default answer, "submit" for storage).
// groups, when not nil, are offered as roster_groups_allowed options.
func (c *Config) Form(typ string, groups []string) *wire.Element {
	x := wire.NewNS("x", NSData).SetAttr("type", typ)
	x.Append(wire.New("field", "var", fieldFormType, "type", "hidden").Append(wire.New("value").SetText(FormTypeNodeConfig)))
	for _, f := range formFields {
		field := wire.New("field", "var", f.name)
		if typ == "form" {
			field.SetAttr("type", f.typ)
			field.SetAttr("label", f.label)
			opts := f.options
			if f.name == fieldRosterGroups {
				opts = groups
			}
			for _, o := range opts {
				field.Append(wire.New("option").Append(wire.New("value").SetText(o)))
			}
		}
		values, _ := c.fieldValue(f.name)
		for _, v := range values {
			if v != "" {
				field.Append(wire.New("value").SetText(v))
			}
		}
		x.Append(field)
	}
	return x
}

// FormTypeMetaData is the FORM_TYPE of a node's meta-data (disco#info on
// the node, XEP-0060 §5.4).
const FormTypeMetaData = NS + "#meta-data"

// MetaData renders what disco#info on the node tells everyone: its title,
// description, payload type, access and publish models (those set).
func (c *Config) MetaData() *wire.Element {
	x := wire.NewNS("x", NSData).SetAttr("type", "result")
	x.Append(wire.New("field", "var", fieldFormType, "type", "hidden").Append(wire.New("value").SetText(FormTypeMetaData)))
	for _, name := range []string{fieldTitle, fieldDescription, fieldType, fieldAccessModel, fieldPublishModel} {
		values, _ := c.fieldValue(name)
		if len(values) == 1 && values[0] != "" {
			x.Append(wire.New("field", "var", name).Append(wire.New("value").SetText(values[0])))
		}
	}
	return x
}

// formValues returns a data form's fields (FORM_TYPE left out) in order.
func formValues(x *wire.Element) (names []string, values map[string][]string) {
	values = map[string][]string{}
	for _, f := range x.ChildrenNamed("field", "") {
		name := f.Attr("var")
		if name == "" || name == fieldFormType {
			continue
		}
		var vs []string
		for _, v := range f.ChildrenNamed("value", "") {
			vs = append(vs, v.AllText())
		}
		if _, seen := values[name]; !seen {
			names = append(names, name)
		}
		values[name] = vs
	}
	return names, values
}

// Apply sets the fields of a submitted form on c. A form of another
// FORM_TYPE is refused; so is a field with a bad value (not-acceptable,
// naming the field).
func (c *Config) Apply(x *wire.Element) error {
	if ft := formType(x); ft != "" && ft != FormTypeNodeConfig && ft != FormTypePublishOptions {
		return errBadForm("FORM_TYPE " + ft)
	}
	names, values := formValues(x)
	for _, name := range names {
		if err := c.setField(name, values[name]); err != nil {
			return errBadForm(err.Error())
		}
	}
	return nil
}

// FormTypePublishOptions is the FORM_TYPE of XEP-0223 publish-options.
const FormTypePublishOptions = NS + "#publish-options"

// Preconditions checks XEP-0223 publish-options against c: every field
// the options name must hold the same value in the node's configuration
// (booleans and max_items compared by meaning, roster groups as sets).
// A field Config does not know is passed over, as Apply does: failing it
// would send a client into reconfiguring a field the node cannot hold
// and retrying forever.
func (c *Config) Preconditions(x *wire.Element) error {
	names, values := formValues(x)
	for _, name := range names {
		have, ok := c.fieldValue(name)
		if !ok {
			continue
		}
		want := Config{}
		if err := want.setField(name, values[name]); err != nil {
			return errPreconditionNotMet(err.Error())
		}
		got, _ := want.fieldValue(name)
		if !sameValues(have, got) {
			return errPreconditionNotMet(name + " is " + strings.Join(have, ",") + ", not " + strings.Join(got, ","))
		}
	}
	return nil
}

func sameValues(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// formType returns a data form's FORM_TYPE value, "" when it has none.
func formType(x *wire.Element) string {
	for _, f := range x.ChildrenNamed("field", "") {
		if f.Attr("var") == fieldFormType {
			return strings.TrimSpace(f.ChildText("value", ""))
		}
	}
	return ""
}

func parseBool(s string) (bool, bool) {
	switch s {
	case "1", "true":
		return true, true
	case "0", "false":
		return false, true
	}
	return false, false
}

func formatBool(v bool) string {
	if v {
		return "true"
	}
	return "false"
}

// parseMaxItems reads pubsub#max_items: a positive number or "max" (0).
func parseMaxItems(s string) (int, bool) {
	if s == "max" {
		return 0, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, false
	}
	return n, true
}

func formatMaxItems(n int) string {
	if n == 0 {
		return "max"
	}
	return strconv.Itoa(n)
}

// DefaultSubscribeOptions are a new subscription's options.
type SubscribeOptions struct {
	// Deliver is pubsub#deliver: false pauses notifications.
	Deliver bool
}

// FormTypeSubscribeOptions is the FORM_TYPE of subscription options.
const FormTypeSubscribeOptions = NS + "#subscribe_options"

// Form renders subscription options.
func (o SubscribeOptions) Form(typ string) *wire.Element {
	x := wire.NewNS("x", NSData).SetAttr("type", typ)
	x.Append(wire.New("field", "var", fieldFormType, "type", "hidden").Append(wire.New("value").SetText(FormTypeSubscribeOptions)))
	f := wire.New("field", "var", "pubsub#deliver")
	if typ == "form" {
		f.SetAttr("type", "boolean")
		f.SetAttr("label", "Enable delivery")
	}
	x.Append(f.Append(wire.New("value").SetText(formatBool(o.Deliver))))
	return x
}

// apply sets the options of a submitted form; unknown fields are
// ignored, a bad value is not-acceptable naming it.
func (o *SubscribeOptions) apply(x *wire.Element) error {
	if ft := formType(x); ft != "" && ft != FormTypeSubscribeOptions {
		return errBadForm("FORM_TYPE " + ft)
	}
	names, values := formValues(x)
	for _, name := range names {
		if name != "pubsub#deliver" {
			continue
		}
		v := ""
		if len(values[name]) > 0 {
			v = strings.TrimSpace(values[name][0])
		}
		b, ok := parseBool(v)
		if !ok {
			return errBadForm("pubsub#deliver: not a boolean: " + v)
		}
		o.Deliver = b
	}
	return nil
}
