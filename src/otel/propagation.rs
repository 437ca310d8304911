//! Incoming trace context: W3C `traceparent` and AWS X-Ray `X-Amzn-Trace-Id`.
//!
//! Input: header values as received. Output: the caller's trace id, its span id (our server span's
//! parent) when it sent one, and its sampling decision when it made one. Anything malformed is
//! ignored, never an error: tracing must not change how a request is answered.
//!
//! An X-Ray trace id `1-5759e988-bd862e3fe1be46a994272793` is the OTel trace id
//! `5759e988bd862e3fe1be46a994272793` (the AWS Distro's own mapping), so a trace started by an
//! X-Ray-instrumented caller, by the ALB, or by the gateway itself (a new `Root=1-<epoch>-<random>`)
//! is one trace in X-Ray and in any OTLP back end.

/// What a caller told us about its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    /// 16-byte trace id.
    pub trace_id: [u8; 16],
    /// The caller's span, parent of our server span.
    pub parent_span_id: Option<[u8; 8]>,
    /// The caller's sampling decision, when it made one (`Sampled=?` or absent is none).
    pub sampled: Option<bool>,
}

/// Parses a W3C `traceparent`: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
/// Versions above 00 are read the same way (the spec's forward-compatibility rule); `ff` and
/// all-zero ids are invalid.
pub fn traceparent(value: &str) -> Option<Incoming> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2 || version.eq_ignore_ascii_case("ff") || hex_bytes::<1>(version).is_none()
    {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = hex_bytes::<16>(trace).filter(|t| t != &[0; 16])?;
    let span_id = hex_bytes::<8>(span).filter(|s| s != &[0; 8])?;
    let [flags] = hex_bytes::<1>(flags)?;
    Some(Incoming {
        trace_id,
        parent_span_id: Some(span_id),
        sampled: Some(flags & 1 == 1),
    })
}

/// Parses `X-Amzn-Trace-Id`: `Root=1-<8 hex>-<24 hex>[;Parent=<16 hex>][;Sampled=0|1|?][;…]`, in
/// any field order. Without a valid `Root` there is no trace to join.
pub fn xray(value: &str) -> Option<Incoming> {
    let mut root = None;
    let mut parent = None;
    let mut sampled = None;
    for field in value.split(';') {
        let Some((k, v)) = field.trim().split_once('=') else {
            continue;
        };
        match k.trim() {
            "Root" => root = xray_root(v.trim()),
            "Parent" => parent = hex_bytes::<8>(v.trim()).filter(|s| s != &[0; 8]),
            "Sampled" => {
                sampled = match v.trim() {
                    "1" => Some(true),
                    "0" => Some(false),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    Some(Incoming {
        trace_id: root?,
        parent_span_id: parent,
        sampled,
    })
}

fn xray_root(v: &str) -> Option<[u8; 16]> {
    let rest = v.strip_prefix("1-")?;
    let (epoch, random) = rest.split_once('-')?;
    if epoch.len() != 8 || random.len() != 24 {
        return None;
    }
    let mut hex = [0u8; 32];
    hex[..8].copy_from_slice(epoch.as_bytes());
    hex[8..].copy_from_slice(random.as_bytes());
    hex_bytes::<16>(std::str::from_utf8(&hex).ok()?).filter(|t| t != &[0; 16])
}

/// Exactly `2 * N` hex digits as bytes.
fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3c_traceparent() {
        let t = traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex::encode(t.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(t.parent_span_id.unwrap()), "00f067aa0ba902b7");
        assert_eq!(t.sampled, Some(true));
        let t = traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert_eq!(t.sampled, Some(false));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(traceparent(bad), None, "{bad}");
        }
        // A later version may append fields.
        assert!(
            traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz").is_some()
        );
    }

    #[test]
    fn xray_header() {
        let t = xray("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
            .unwrap();
        assert_eq!(hex::encode(t.trace_id), "5759e988bd862e3fe1be46a994272793");
        assert_eq!(hex::encode(t.parent_span_id.unwrap()), "53995c3f42cd8ad8");
        assert_eq!(t.sampled, Some(true));
        // Order free, ALB's Self= ignored, no Parent, undecided sampling.
        let t = xray("Self=1-67891234-12456789abcdef012345678;Root=1-67891233-abcdef012345678912345678;Sampled=?")
            .unwrap();
        assert_eq!(hex::encode(t.trace_id), "67891233abcdef012345678912345678");
        assert_eq!((t.parent_span_id, t.sampled), (None, None));
        assert_eq!(
            xray("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0")
                .unwrap()
                .sampled,
            Some(false)
        );
        for bad in [
            "",
            "Parent=53995c3f42cd8ad8",
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e98-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a99427279g",
            "garbage",
        ] {
            assert_eq!(xray(bad), None, "{bad}");
        }
    }
}
