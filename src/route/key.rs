//! Route keys: the `"METHOD /path"` names that throttle overrides and usage plans use for a route.

/// HTTP methods a route key may name (API Gateway's seven plus `ANY`).
pub const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY",
];

/// Normalises a route key to `"METHOD /path"`: accepts `"GET /a/{b}"` and API Gateway's
/// `"/a/{b}/GET"`, upper-cases the method and drops trailing slashes (as gateway.yaml does).
/// `None` when it is neither form or the method is unknown.
pub fn normalize_route_key(key: &str) -> Option<String> {
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
    Some(format!("{method} {path}"))
}
