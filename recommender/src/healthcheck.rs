//! `recommender healthcheck`: the Docker `HEALTHCHECK` probe (the image has no curl).
//!
//! Input: a loopback port. Output: `Ok` when `GET /ping` answers 200 within the timeout.
//! A minimal HTTP/1.1 client over `std::net` is enough: one request, `Connection: close`, only the
//! status line is read.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Sends `GET /ping` to `addr` and checks for status 200.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("socket: {e}"))?;
    let request = format!("GET /ping HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    // The status line fits in the first bytes; stop reading at its end.
    let mut head = Vec::with_capacity(64);
    let mut buf = [0_u8; 64];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line.lines().next().unwrap_or("").trim().to_owned();
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if status.starts_with("HTTP/1.") && code == "200" {
        Ok(())
    } else {
        Err(format!("unexpected answer: {status:?}"))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A one-shot loopback server answering `status_line`.
    fn answer_once(status_line: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0_u8; 512];
                let _ = s.read(&mut buf);
                let _ =
                    s.write_all(format!("{status_line}\r\ncontent-length: 0\r\n\r\n").as_bytes());
            }
        });
        addr
    }

    #[test]
    fn only_a_200_is_healthy() {
        let t = Duration::from_secs(5);
        assert_eq!(check(answer_once("HTTP/1.1 200 OK"), t), Ok(()));
        let e = check(answer_once("HTTP/1.1 503 Service Unavailable"), t).expect_err("503");
        assert!(e.contains("503"), "{e}");
        let e = check(answer_once("garbage"), t).expect_err("garbage");
        assert!(e.contains("garbage"), "{e}");
        // Nothing listening: a fresh port that was just released.
        let closed = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        assert!(check(closed, t).is_err());
    }
}
