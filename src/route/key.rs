//! Route keys: the `"METHOD /path"` names that throttle overrides and usage plans use for a route.

/// HTTP methods a route key may name (API Gateway's seven plus `ANY`).
pub const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY",
];

/// A route's name: its method and resource path template, as throttle overrides and usage plans
/// name it (`GET /recommended-movies/{user_id}`). Written `"METHOD /path"`; [`RouteKey::parse`]
/// also reads API Gateway's `"/path/METHOD"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    /// Upper case, one of [`METHODS`].
    pub method: String,
    /// The resource path template, without a trailing slash (`/` alone for the root).
    pub path: String,
}

impl RouteKey {
    /// Reads `"GET /a/{b}"` or API Gateway's `"/a/{b}/GET"`, upper-casing the method and dropping
    /// trailing slashes (as gateway.yaml does). `None` when it is neither form or the method is
    /// unknown.
    pub fn parse(key: &str) -> Option<RouteKey> {
        let key = key.trim();
        let (method, path) = match key.split_once(char::is_whitespace) {
            Some((method, path)) => (method, path.trim()),
            None => {
                let (path, method) = key.rsplit_once('/')?;
                (method, if path.is_empty() { "/" } else { path })
            }
        };
        let method = method.to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) || !path.starts_with('/') || path.contains(' ') {
            return None;
        }
        let path = match path.trim_end_matches('/') {
            "" => "/",
            p => p,
        };
        Some(RouteKey {
            method,
            path: path.to_owned(),
        })
    }

    /// Whether this names the route `method` `path` (as the router reports them).
    pub fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

impl std::fmt::Display for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Normalises a route key to `"METHOD /path"` ([`RouteKey::parse`], written out).
pub fn normalize_route_key(key: &str) -> Option<String> {
    RouteKey::parse(key).map(|k| k.to_string())
}
