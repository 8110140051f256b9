package config

import (
	"strings"
	"testing"
)

// Issue 20: api.admin must be a loopback port or a socket unless a token
// protects it; api.address and api.admin.address are host:port.
func TestCheckAdminAndAddress(t *testing.T) {
	for _, tc := range []struct {
		a   Admin
		bad string
	}{
		{Admin{}, ""},
		{Admin{Address: "127.0.0.1:2021"}, ""},
		{Admin{Address: "localhost:2021"}, ""},
		{Admin{Address: "[::1]:2021"}, ""},
		{Admin{Socket: "/run/sidelog/admin.sock"}, ""},
		{Admin{Address: "0.0.0.0:2021", TokenFile: "/t"}, ""},
		{Admin{Address: "0.0.0.0:2021"}, "not a loopback"},
		{Admin{Address: ":2021"}, "not a loopback"},
		{Admin{Address: "127.0.0.1:2021", Socket: "/s"}, "not both"},
		{Admin{Address: "127.0.0.1"}, "host:port"},
		{Admin{TokenFile: "/t"}, "off"},
	} {
		err := checkAdmin(tc.a)
		if (tc.bad == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%+v: %v, want %q", tc.a, err, tc.bad)
		}
	}
	for addr, ok := range map[string]bool{"127.0.0.1:2020": true, "0.0.0.0:2020": true, ":0": true, "[::]:2020": true,
		"127.0.0.1": false, "127.0.0.1:99999": false, "127.0.0.1:http": false, "a b:1": false} {
		if _, err := checkAddress(addr); (err == nil) != ok {
			t.Errorf("checkAddress(%q) = %v", addr, err)
		}
	}
}
