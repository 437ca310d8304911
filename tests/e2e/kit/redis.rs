//! A real `redis-server` (Debian package `redis-server`; `.ci/run` installs it) on a free loopback
//! port, without persistence (`--save "" --appendonly no`), for the shared limit store. It can be
//! stopped and started again on the same port (an empty server, as after a failover without
//! persistence), or paused with SIGSTOP (a hung server: connections stay open, nothing answers).
//! Killed when the handle drops.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::WAIT;

/// A running (or stopped) redis-server.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts one on a free port and waits until it is the one answering there (retried on another
    /// port when something took the port first).
    pub fn start() -> RedisServer {
        for _ in 0..5 {
            let mut server = RedisServer {
                child: None,
                port: super::closed_port(),
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start on a free port");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its data is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts an empty server on the same port (stopping the current one first).
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "redis-server did not start again on its port");
    }

    /// Spawns on `self.port`; true once the server answering there reports this child's process
    /// id (another test's server on a reused port would answer PING too).
    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let pid = format!("process_id:{}", child.id());
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited || Instant::now() > deadline {
                self.stop();
                return false;
            }
            if self
                .command("INFO server\r\n")
                .is_some_and(|info| info.contains(&pid))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGSTOP: the server keeps its connections but answers nothing.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("server running").id();
        let status = Command::new("kill")
            .args(["-s", name, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Sends one inline command and returns the first reply bytes (enough for small replies).
    pub fn command(&self, inline: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(inline.as_bytes()).ok()?;
        let mut buf = [0u8; 8192];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a paused (stopped) server too.
        self.stop();
    }
}
