package fingerprint

import (
	"net/url"
	"strings"
)

// commenterTags finds the tags of an SQL text: those of the last /* */
// comment that is a sqlcommenter comment (key='url-encoded value',...), or
// failing that of the last comment in Rails' legacy key:value format. It also
// returns the trace id of a valid traceparent tag.
func commenterTags(sql string, toks []token) (map[string]string, string) {
	for i := len(toks) - 1; i >= 0; i-- {
		t := toks[i]
		if t.kind != tkComment || sql[t.start+1] != '*' {
			continue
		}
		body := sql[t.start+2 : t.end-2]
		tags := parseCommenter(body)
		if tags == nil {
			tags = parseLegacyTags(body)
		}
		if tags != nil {
			return tags, traceID(tags["traceparent"])
		}
	}
	return nil, ""
}

// parseCommenter parses the body of a sqlcommenter comment:
// key='value',key2='value2', keys and values URL-encoded, ' in values
// escaped as \'. It returns nil unless the whole body has that form.
func parseCommenter(body string) map[string]string {
	var tags map[string]string
	s := strings.TrimSpace(body)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil
		}
		key := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " ")
		if key == "" || strings.ContainsAny(key, " ,'") || s == "" || s[0] != '\'' {
			return nil
		}
		var val strings.Builder
		i := 1
		for ; i < len(s); i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				val.WriteByte(s[i])
				continue
			}
			if s[i] == '\'' {
				break
			}
			val.WriteByte(s[i])
		}
		if i >= len(s) {
			return nil // no closing quote
		}
		s = strings.TrimLeft(s[i+1:], " ")
		if s != "" {
			if s[0] != ',' {
				return nil
			}
			s = strings.TrimLeft(s[1:], " ")
		}
		if tags == nil {
			tags = map[string]string{}
		}
		tags[unescape(key)] = unescape(val.String())
	}
	return tags
}

// unescape URL-decodes s, keeping s as it is when it is not valid.
func unescape(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// parseLegacyTags parses Rails' legacy query log format (also the format of
// the marginalia gem): key:value,key:value. To keep ordinary comments out,
// keys must be lower-case words and one of them must be application,
// controller, action or job.
func parseLegacyTags(body string) map[string]string {
	tags := map[string]string{}
	known := false
	for _, part := range strings.Split(strings.TrimSpace(body), ",") {
		key, val, ok := strings.Cut(part, ":")
		if !ok || key == "" || val == "" {
			return nil
		}
		for i := 0; i < len(key); i++ {
			if c := key[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
				return nil
			}
		}
		switch key {
		case "application", "controller", "action", "job":
			known = true
		}
		tags[key] = strings.TrimSpace(val)
	}
	if !known {
		return nil
	}
	return tags
}

// traceID returns the trace id of a W3C traceparent value
// (version-traceid-parentid-flags), or "" when the value is not valid.
func traceID(tp string) string {
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return ""
	}
	version, id, parent, flags := tp[:2], tp[3:35], tp[36:52], tp[53:55]
	if !lowerHex(version) || !lowerHex(id) || !lowerHex(parent) || !lowerHex(flags) || version == "ff" {
		return ""
	}
	if len(tp) > 55 && (version == "00" || tp[55] != '-') {
		return ""
	}
	if strings.Trim(id, "0") == "" || strings.Trim(parent, "0") == "" {
		return ""
	}
	return id
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
