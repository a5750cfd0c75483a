package conf

import (
	"reflect"
	"strings"
	"testing"
)

func TestChangedAndCheckReload(t *testing.T) {
	a := Default()
	b := Default()
	if got := Changed(a, b); len(got) != 0 {
		t.Fatalf("Changed of two defaults = %v", got)
	}
	b.LogLevel = "debug"
	b.Balance.Weights = map[string]float64{"n1": 2}
	b.Admin.Admins = []string{"boss@localhost"}
	if got, want := Changed(a, b), []string{"log_level", "admin.admins", "balance.weights"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Changed = %v, want %v", got, want)
	}
	if _, err := CheckReload(a, b); err == nil || !strings.Contains(err.Error(), "conf: admin.admins, balance.weights cannot change") {
		t.Errorf("CheckReload of fixed keys: %v", err)
	}
	c := Default()
	c.LogLevel = "warn"
	if got, err := CheckReload(a, c); err != nil || !reflect.DeepEqual(got, []string{"log_level"}) {
		t.Errorf("CheckReload of log_level = %v, %v", got, err)
	}
	c.C2S.AllowRegistration = true // Live too (the console's settings)
	if got, err := CheckReload(a, c); err != nil || !reflect.DeepEqual(got, []string{"log_level", "c2s.allow_registration"}) {
		t.Errorf("CheckReload of two Live keys = %v, %v", got, err)
	}
	c.LogLevel = "loud"
	if _, err := CheckReload(a, c); err == nil || !strings.Contains(err.Error(), "log_level") {
		t.Errorf("CheckReload of an invalid value: %v", err)
	}
}
