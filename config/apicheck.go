package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// checkAdmin checks api.admin's values; errors name the key.
func checkAdmin(a Admin) error {
	if a.Address != "" && a.Socket != "" {
		return errors.New("api.admin: give address or socket, not both")
	}
	if a.Address != "" {
		host, err := checkAddress(a.Address)
		if err != nil {
			return fmt.Errorf("api.admin.address: %w", err)
		}
		if !isLoopbackHost(host) && a.TokenFile == "" {
			return fmt.Errorf("api.admin.address %q is not a loopback address: bind 127.0.0.1 (or use a socket), or set api.admin.token_file", a.Address)
		}
	}
	if a.TokenFile != "" && !(a.Address != "" || a.Socket != "") {
		return errors.New("api.admin.token_file is set but the admin listener is off: set api.admin.address or api.admin.socket")
	}
	return nil
}

// checkAddress checks a listen address (host:port, port 0-65535; an empty
// host means every address) and returns its host.
func checkAddress(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:2020): %v", addr, err)
	}
	var n int
	if _, err := fmt.Sscanf(port, "%d", &n); err != nil || n < 0 || n > 65535 || fmt.Sprint(n) != port {
		return "", fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		if strings.ContainsAny(host, " /:@") {
			return "", fmt.Errorf("%q: host %q is not an IP address or a host name", addr, host)
		}
	}
	return host, nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
