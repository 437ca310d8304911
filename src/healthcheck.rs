//! `sagegate healthcheck`: a dependency-free HTTP/1.1 GET of `/healthz` for container health checks
//! (the runtime image has no curl). Exit status carries the answer. [`get`] is the same client
//! reading a whole answer, for `sagegate usage --admin`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// GETs `url` (`http://host:port/path` only) and succeeds on a 200.
pub fn probe(url: &str) -> Result<(), String> {
    let mut stream = send_get(url, Duration::from_secs(3))?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        Err(format!("{url} answered {status}"))
    }
}

/// GETs `url` (`http://host:port/path?query` only) and returns the status and the body (the
/// server is asked to close the connection, so the body is whatever arrives before it does).
pub fn get(url: &str) -> Result<(u16, String), String> {
    let stream = send_get(url, Duration::from_secs(10))?;
    let mut answer = Vec::new();
    // At most 64 MiB: a usage read-out of many thousands of keys fits easily.
    stream
        .take(64 << 20)
        .read_to_end(&mut answer)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{url}: incomplete answer"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: no status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// Connects to `url` (`http://host:port/path` only), with `timeout` on connecting, reading and
/// writing, and sends a `GET` asking the server to close the connection after its answer.
fn send_get(url: &str, timeout: Duration) -> Result<TcpStream, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Joins a chunked body (sizes in hex, each chunk followed by CRLF, a 0 chunk at the end).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves one connection with `answer` and returns the URL.
    fn serve_once(answer: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // Read the whole request head first: closing with unread bytes would reset the
            // connection under the client's read.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            s.write_all(answer.as_bytes()).unwrap();
        });
        format!("http://{addr}/usage?period=current")
    }

    #[test]
    fn get_reads_sized_and_chunked_bodies() {
        let url = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{\"a\":1}");
        assert_eq!(get(&url).unwrap(), (200, "{\"a\":1}".to_owned()));
        let url = serve_once(
            "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
        );
        assert_eq!(get(&url).unwrap(), (503, "{\"a\":1}".to_owned()));
        assert!(get("https://example.invalid/").is_err());
    }
}
