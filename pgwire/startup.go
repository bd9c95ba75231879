package pgwire

import (
	"encoding/binary"
	"strings"
)

// Startup-phase request codes (src/include/libpq/pqcomm.h): the second word
// of a startup-phase packet, after its length.
const (
	CodeCancel = 80877102 // CancelRequest
	CodeSSL    = 80877103 // SSLRequest
	CodeGSSENC = 80877104 // GSSENCRequest
	// MaxStartupPacketLen is PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
	MaxStartupPacketLen = 10000
	// TLSRecordStart is the first byte of a TLS record: a client that opens
	// with it wants direct TLS (PostgreSQL 17+).
	TLSRecordStart = 0x16
)

// Startup is what a protocol-3 StartupMessage says about its connection.
type Startup struct {
	User, Database, ApplicationName string
	// Replication is set when the client asks for a replication connection,
	// whose traffic is not statements.
	Replication bool
}

// ParseStartup reads a whole startup-phase packet (length word included).
// ok is false when it is not a protocol-3 StartupMessage. Database defaults
// to User, as the server does; a malformed key/value list ends at the first
// bad pair.
func ParseStartup(pkt []byte) (s Startup, ok bool) {
	if len(pkt) < 8 || binary.BigEndian.Uint32(pkt[4:8])>>16 != 3 {
		return Startup{}, false
	}
	for b := pkt[8:]; len(b) > 0; {
		k, rest, ok := cut0(b)
		if !ok || len(k) == 0 {
			break
		}
		v, rest2, ok := cut0(rest)
		if !ok {
			break
		}
		switch string(k) {
		case "user":
			s.User = string(v)
		case "database":
			s.Database = string(v)
		case "application_name":
			s.ApplicationName = string(v)
		case "replication":
			switch strings.ToLower(string(v)) {
			case "", "false", "off", "no", "0":
			default:
				s.Replication = true
			}
		}
		b = rest2
	}
	if s.Database == "" {
		s.Database = s.User
	}
	return s, true
}

// ConnInfo returns the identity of connection id from client address client.
func (s Startup) ConnInfo(id uint64, client string) *ConnInfo {
	return &ConnInfo{ID: id, ClientAddr: client, User: s.User, Database: s.Database, ApplicationName: s.ApplicationName}
}

// cut0 splits b at its first NUL.
func cut0(b []byte) (before, after []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// WithParameterStatus returns the identity after a ParameterStatus message
// whose body is body: a copy with the new application_name when that is what
// it reports and it differs, else info itself. A ConnInfo is shared by the
// executions already emitted, so it is never changed in place.
func WithParameterStatus(info *ConnInfo, body []byte) *ConnInfo {
	name, rest, ok := cut0(body)
	if !ok || string(name) != "application_name" {
		return info
	}
	value, _, _ := cut0(rest)
	if string(value) == info.ApplicationName {
		return info
	}
	c := *info
	c.ApplicationName = string(value)
	return &c
}

// StandardStringsStatus reads the body of a ParameterStatus message: the
// setting it reports, and whether it reports standard_conforming_strings at
// all. A value other than on or off is StandardStringsUnknown.
func StandardStringsStatus(body []byte) (StandardStrings, bool) {
	name, rest, ok := cut0(body)
	if !ok || string(name) != "standard_conforming_strings" {
		return StandardStringsUnknown, false
	}
	value, _, _ := cut0(rest)
	switch string(value) {
	case "on":
		return StandardStringsOn, true
	case "off":
		return StandardStringsOff, true
	}
	return StandardStringsUnknown, true
}
