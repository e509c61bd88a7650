package mqemu

import (
	"encoding/json"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// serveAdmin answers the JSON introspection endpoints. They carry no
// authentication: the emulator is a loopback test and dev tool.
//
//	GET /_emulator/stats                    {"topics":[TopicStats], "groups":[GroupStats]}
//	GET /_emulator/stats?topic=T            the same, restricted to topic T
//	GET /_emulator/stats?topic=T&group=G    one GroupStats (also for a group that never consumed)
//	GET /_emulator/deadletters?topic=T&group=G   [DeadLetter]
//	GET /_emulator/faults                   {"faults":"dup=0.1,..."}
//	PUT /_emulator/faults  body "dup=0.1"   sets the faults (ParseFaults syntax)
//	POST /_emulator/faults with Content-Type application/json, body {"faults":"dup=0.1"}: the same
//
// Being unauthenticated, they must not be reachable from a web page the
// operator happens to open: a request whose Host is not loopback (or one
// of Config.AdminHosts) is refused, which defeats DNS rebinding; so is
// one a browser marks as coming from another site (Origin, Sec-Fetch-Site).
// Writes need PUT or a JSON POST: neither is a "simple" request, so a
// browser sends a CORS preflight first, which gets no Access-Control
// answer, and the write never happens.
func (e *Emulator) serveAdmin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if msg := e.crossSite(r); msg != "" {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": msg})
		return
	}
	q := r.URL.Query()
	switch r.URL.Path {
	case "/_emulator/stats":
		if r.Method != http.MethodGet {
			break
		}
		topic, group := q.Get("topic"), q.Get("group")
		if topic != "" && group != "" {
			writeJSON(w, http.StatusOK, e.Stats(topic, group))
			return
		}
		out := struct {
			Topics []TopicStats `json:"topics"`
			Groups []GroupStats `json:"groups"`
		}{Topics: []TopicStats{}, Groups: []GroupStats{}}
		for _, t := range e.Topics() {
			if topic == "" || t.Topic == topic {
				out.Topics = append(out.Topics, t)
			}
		}
		for _, g := range e.AllStats() {
			if topic == "" || g.Topic == topic {
				out.Groups = append(out.Groups, g)
			}
		}
		writeJSON(w, http.StatusOK, out)
		return
	case "/_emulator/deadletters":
		if r.Method != http.MethodGet {
			break
		}
		topic, group := q.Get("topic"), q.Get("group")
		if topic == "" || group == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "topic and group query parameters are required"})
			return
		}
		dls := e.DeadLetters(topic, group)
		if dls == nil {
			dls = []DeadLetter{}
		}
		writeJSON(w, http.StatusOK, dls)
		return
	case "/_emulator/faults":
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, map[string]string{"faults": e.Faults().String()})
			return
		case http.MethodPut, http.MethodPost:
			spec, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<10))
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "fault spec unreadable or over 4 KB"})
				return
			}
			if r.Method == http.MethodPost {
				ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
				var body struct {
					Faults *string `json:"faults"`
				}
				if ct != "application/json" {
					writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": `POST needs Content-Type application/json and body {"faults":"..."}; or PUT the spec`})
					return
				}
				if err := json.Unmarshal(spec, &body); err != nil || body.Faults == nil {
					writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body must be {"faults":"..."}`})
					return
				}
				spec = []byte(*body.Faults)
			}
			f, err := ParseFaults(string(spec))
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			e.SetFaults(f)
			writeJSON(w, http.StatusOK, map[string]string{"faults": f.String()})
			return
		}
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown endpoint; see /_emulator/stats, /_emulator/deadletters, /_emulator/faults"})
		return
	}
	writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil { // only plain structs are encoded here
		status, body = http.StatusInternalServerError, []byte(`{"error":"encoding failed"}`)
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// crossSite returns why r may not use the admin endpoints, or "".
func (e *Emulator) crossSite(r *http.Request) string {
	if !e.adminHost(r.Host) {
		return "Host " + r.Host + " not accepted: the admin endpoints answer loopback names only (or mqemu.Config.AdminHosts)"
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return "cross-site request refused"
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return "request from another origin refused"
		}
	}
	return ""
}

func (e *Emulator) adminHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return true
	}
	return slices.ContainsFunc(e.cfg.AdminHosts, func(a string) bool { return strings.EqualFold(a, host) })
}
