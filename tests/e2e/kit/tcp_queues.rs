//! What the kernel holds on loopback connections, read from `/proc/net/tcp` and `/proc/net/tcp6`
//! (Linux): a test can tell bytes queued in socket buffers, which autotuning may grow to megabytes,
//! from bytes a process holds itself.

/// Bytes queued in the kernel on every connection (not listening socket) with an end on `port`:
/// each end's send queue (written, not yet acknowledged) plus its receive queue (arrived, not yet
/// read). Both ends of a loopback connection are listed, so one port covers the connection whole.
pub fn queued_on(port: u16) -> u64 {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|line| queued(&line, port))
        .sum()
}

/// One table line's queues when the socket has an end on `port` and is not listening.
fn queued(line: &str, port: u16) -> Option<u64> {
    const LISTEN: &str = "0A";
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [_, local, remote, state, queues, ..] = fields.as_slice() else {
        return None;
    };
    let port_of = |address: &str| {
        let (_, hex) = address.rsplit_once(':')?;
        u16::from_str_radix(hex, 16).ok()
    };
    if *state == LISTEN || (port_of(local) != Some(port) && port_of(remote) != Some(port)) {
        return None;
    }
    let (tx, rx) = queues.split_once(':')?;
    let hex = |n: &str| u64::from_str_radix(n, 16).ok();
    Some(hex(tx)? + hex(rx)?)
}

#[test]
fn a_table_line_gives_its_queues_for_either_end() {
    let established = "   3: 0100007F:A1B2 0100007F:1F90 01 00000100:00000020 00:00000000 00000000     0        0 1";
    assert_eq!(queued(established, 0xA1B2), Some(0x120));
    assert_eq!(queued(established, 0x1F90), Some(0x120));
    assert_eq!(queued(established, 80), None);
    let listening = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 1";
    assert_eq!(queued(listening, 0x1F90), None);
}
