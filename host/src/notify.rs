//! systemd's readiness protocol (`sd_notify`, `Type=notify` units): when
//! `NOTIFY_SOCKET` is set, the host tells the service manager it is ready
//! (after it listens), reloading (SIGHUP) and stopping. Without the
//! variable — every other way scimgate runs — nothing happens. No library:
//! one datagram on a Unix socket.

/// Sends `state` (e.g. `"READY=1"`) to the service manager, if any. Errors
/// are logged at debug level and otherwise ignored: readiness is a courtesy
/// to the manager, never a reason to stop serving.
pub fn notify(state: &str) {
    #[cfg(target_os = "linux")]
    {
        let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
            return;
        };
        if let Err(e) = send(&socket, state) {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = state;
}

#[cfg(target_os = "linux")]
fn send(socket: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    let bytes = socket.as_bytes();
    let address = match bytes.first() {
        // An abstract socket, written `@name`.
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..])?,
        Some(b'/') => SocketAddr::from_pathname(std::path::Path::new(socket))?,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither a path nor an abstract socket",
            ))
        }
    };
    let datagram = UnixDatagram::unbound()?;
    datagram.send_to_addr(state.as_bytes(), &address)?;
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn states_reach_a_path_socket_and_bad_addresses_are_errors() {
        let dir = std::env::temp_dir().join(format!("scimgate-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(send(std::ffi::OsStr::new("relative.sock"), "READY=1").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
