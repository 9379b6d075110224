// Package proxy is mistral-tap's reverse proxy: a goproxy server in reverse
// mode (requests are pointed at the upstream before goproxy sees them) that
// forwards every request to Mistral's API unchanged and taps the responses.
//
// Transparency: the client gets Mistral's status, headers and body bytes.
// Hop-by-hop headers (RFC 7230 §6.1: the fixed list plus every header named
// in Connection) are removed in both directions, as net/http/httputil does.
// The client's Host header is kept towards Mistral, because Mistral builds
// the `next` links of list responses from the request Host; with Host kept
// they point back at the proxy. X-Forwarded-* headers are neither added nor
// removed: a sidecar on the client's host adds no information, and Mistral
// only reads them when oslo_middleware's enable_proxy_headers_parsing is on,
// where an added X-Forwarded-Proto would silently change its links.
//
// Tapping: for 2xx responses to GET/POST/PUT on the execution and task
// routes, a bounded copy of the body is taken while the client reads it. When
// the body reached io.EOF, and only then, it is parsed in a goroutine and
// every execution or task in it is passed to the Observer. The tee is
// installed at the transport (ProxyCtx.RoundTripper), before goproxy sees the
// body, so goproxy does not treat the body as replaced and Mistral's
// Content-Length reaches the client unchanged; no http.ResponseWriter
// wrapper is needed, so goproxy's Hijacker/Flusher assertions see the real
// writer. Bodies of unknown length are flushed to the client before every
// upstream read that could block, as httputil.ReverseProxy does for
// ContentLength == -1, so a slow list streams.
//
// A body the upstream cuts short (a chunked body without its last chunk,
// fewer bytes than its Content-Length) is cut short for the client too: the
// proxy flushes what arrived and closes the connection without ending the
// response, so the client fails as it would against Mistral directly.
//
// Safety: CONNECT is refused (405) and so is an absolute-URL request for any
// host other than the upstream (403): the sidecar is never an open proxy.
// A request path whose ".." segments climb above the API root (/../x,
// /%2e%2e/x, /v2/../../x, also with %2F or double encoding) is refused with
// 400 and a Mistral-style fault, since an upstream or ingress that resolves
// dot segments would serve a path outside the upstream's base path. Other
// paths, dot segments included, are forwarded as they are; those with a dot
// segment are not tapped. The upstream transport ignores HTTP_PROXY and
// verifies TLS.
package proxy
