//! Who is on the other end of a loopback connection: the client-certificate forwarder
//! (`client_cert`) serves only connections kiln itself opened, so no other local process (a
//! RUN on the host network, another user) can borrow kiln's TLS identity. The kernel's socket
//! table of the network namespace (`/proc/self/net/tcp`, `tcp6`) names the inode of the
//! connecting socket; kiln made it when one of its own descriptors is that socket.

use std::net::SocketAddr;

/// Whether the socket at `peer` connected to `local` is one of this process's descriptors.
/// Unknown (no /proc) counts as not.
pub(crate) fn is_own(peer: SocketAddr, local: SocketAddr) -> bool {
    let Some(inode) = socket_inode(peer, local) else {
        return false;
    };
    let want = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == want.as_str())
    })
}

/// The inode of the socket whose local address is `from` and remote `to`.
fn socket_inode(from: SocketAddr, to: SocketAddr) -> Option<u64> {
    let (from, to) = (hex_addr(from), hex_addr(to));
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        .find(|f| f.len() > 9 && f[1].eq_ignore_ascii_case(&from) && f[2].eq_ignore_ascii_case(&to))
        .and_then(|f| f[9].parse().ok())
}

/// An address as the kernel's table writes it: the address's 32-bit words in host order, in
/// hex, then `:` and the port in hex.
fn hex_addr(addr: SocketAddr) -> String {
    let words: Vec<[u8; 4]> = match addr {
        SocketAddr::V4(a) => vec![a.ip().octets()],
        SocketAddr::V6(a) => a
            .ip()
            .octets()
            .chunks(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect(),
    };
    let mut out = String::new();
    for w in words {
        out.push_str(&format!("{:08X}", u32::from_ne_bytes(w)));
    }
    format!("{out}:{:04X}", addr.port())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tells_own_connections_from_others() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let mine = std::net::TcpStream::connect(local).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, mine.local_addr().unwrap());
        assert!(is_own(peer, local));
        // a connection from another process (bash's /dev/tcp)
        let mut other = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "exec 3<>/dev/tcp/127.0.0.1/{} && sleep 5",
                local.port()
            ))
            .spawn()
            .unwrap();
        let (_foreign, foreign_peer) = listener.accept().unwrap();
        let own = is_own(foreign_peer, local);
        let _ = other.kill();
        let _ = other.wait();
        drop(mine);
        assert!(!own, "a connection from another process counts as kiln's");
    }
}
