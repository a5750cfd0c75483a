package conf

import "testing"

// Group chat's keys are validated with errors naming them, and its
// domain defaults to conference.<domain>.
func TestMUCKeysValidated(t *testing.T) {
	checkKeyErrors(t, []keyCase{
		{"muc.domain", func(c *Config) { c.MUC.Domain = "conference.other.org" }},
		{"muc.domain", func(c *Config) { c.MUC.Domain = "room@conference.localhost" }},
		{"muc.history", func(c *Config) { c.MUC.History = -1 }},
		{"muc.max_occupants", func(c *Config) { c.MUC.MaxOccupants = -5 }},
		{"muc.create", func(c *Config) { c.MUC.Create = "everybody" }},
		{"muc.message_rate", func(c *Config) { c.MUC.MessageRate = -1 }},
		{"muc.message_burst", func(c *Config) { c.MUC.MessageBurst = -1 }},
		{"muc.max_rooms_per_user", func(c *Config) { c.MUC.MaxRoomsPerUser = -2 }},
	})
	c := Default()
	if !c.MUC.On() || c.MUCDomain() != "conference.localhost" || c.MUC.History != 20 || c.MUC.MaxOccupants != 1000 || c.MUC.Create != "local" || c.MUC.MaxRoomsPerUser != 100 {
		t.Errorf("defaults: %+v, domain %s", c.MUC, c.MUCDomain())
	}
	c.MUC.MaxRoomsPerUser = -1
	if errs := c.Validate(); len(errs) != 0 {
		t.Errorf("muc.max_rooms_per_user -1 (no limit) is refused: %v", errs)
	}
	off := false
	c.MUC.Enabled, c.MUC.Domain = &off, "nonsense"
	if errs := c.Validate(); len(errs) != 0 {
		t.Errorf("a disabled service's domain is not checked: %v", errs)
	}
}
