//! Parameter-mapping expressions, API Gateway's right-hand side of `requestParameters`.
//!
//! `context.requestId`, `method.request.header.X-Tenant`, `method.request.querystring.k`,
//! `method.request.path.user_id`, `stageVariables.model`, or a quoted literal `'AllTraffic'`.
//! Parsed once at load; evaluated per request by the pipeline, which knows the values.

use std::fmt;

/// Where a mapped value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamSource {
    /// `context.<dotted name>`, e.g. `context.requestId`, `context.identity.apiKeyId`.
    Context(String),
    /// `method.request.header.<name>` (case-insensitive name).
    Header(String),
    /// `method.request.querystring.<name>`.
    Query(String),
    /// `method.request.path.<name>`.
    Path(String),
    /// `stageVariables.<name>`.
    StageVariable(String),
    /// `'text'`: a constant.
    Literal(String),
}

impl ParamSource {
    /// Parses an expression; the error says which forms are accepted.
    pub fn parse(expr: &str) -> Result<ParamSource, String> {
        let expr = expr.trim();
        if let Some(inner) = expr.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            return Ok(ParamSource::Literal(inner.to_owned()));
        }
        type Make = fn(String) -> ParamSource;
        let forms: [(&str, Make); 5] = [
            ("context.", ParamSource::Context),
            ("method.request.header.", ParamSource::Header),
            ("method.request.querystring.", ParamSource::Query),
            ("method.request.path.", ParamSource::Path),
            ("stageVariables.", ParamSource::StageVariable),
        ];
        for (prefix, make) in forms {
            if let Some(name) = expr.strip_prefix(prefix) {
                let valid = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._$-".contains(c));
                if !valid {
                    return Err(format!("invalid name after `{prefix}` in `{expr}`"));
                }
                return Ok(make(name.to_owned()));
            }
        }
        Err(format!(
            "`{expr}` is not a mapping expression: use context.NAME, method.request.header.NAME, \
             method.request.querystring.NAME, method.request.path.NAME, stageVariables.NAME or a 'quoted literal'"
        ))
    }
}

impl fmt::Display for ParamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamSource::Context(n) => write!(f, "context.{n}"),
            ParamSource::Header(n) => write!(f, "method.request.header.{n}"),
            ParamSource::Query(n) => write!(f, "method.request.querystring.{n}"),
            ParamSource::Path(n) => write!(f, "method.request.path.{n}"),
            ParamSource::StageVariable(n) => write!(f, "stageVariables.{n}"),
            ParamSource::Literal(v) => write!(f, "'{v}'"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            ParamSource::parse("context.requestId"),
            Ok(ParamSource::Context("requestId".into()))
        );
        assert_eq!(
            ParamSource::parse("method.request.header.X-Tenant"),
            Ok(ParamSource::Header("X-Tenant".into()))
        );
        assert_eq!(
            ParamSource::parse("'AllTraffic'"),
            Ok(ParamSource::Literal("AllTraffic".into()))
        );
        assert!(ParamSource::parse("requestId").is_err());
        assert!(ParamSource::parse("context.").is_err());
    }
}
