package proxy

import (
	"net/http"
	"net/textproto"
	"strings"
)

// hopHeaders are hop-by-hop headers, removed in both directions (the list of
// net/http/httputil/reverseproxy.go). goproxy itself only drops Proxy-*,
// Connection and Accept-Encoding from requests and nothing from responses,
// so Keep-Alive and the headers named in Connection would otherwise leak.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection", // non-standard but still sent by libcurl
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",      // canonicalized version of "TE"
	"Trailer", // not Trailers; https://www.rfc-editor.org/errata_search.php?eid=4522
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopByHop deletes hop-by-hop headers: first those named in
// Connection (RFC 7230 §6.1), then the fixed list.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, f := range hopHeaders {
		h.Del(f)
	}
}
