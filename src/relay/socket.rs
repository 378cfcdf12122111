//! The relay socket file: a Unix-domain stream socket that subscribers connect to.
//!
//! Socket file hygiene: the directory is created with the socket's bits plus search bits
//! ([`dir_mode`]: 0700 for the default 600), the socket gets the configured mode; a live relay
//! already on the path is refused, a stale socket file (crash) is unlinked; the file is removed
//! on shutdown ([`SocketGuard`]). Runs once at start-up, on the thread that starts the relay.

use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::relay::config::RelayConfig;

/// Why the relay socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Another process is accepting on the path.
    #[error("another relay is live on {0}; refusing to take over its socket")]
    InUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("{0} exists and is not a socket; refusing to remove it")]
    NotASocket(PathBuf),
    /// Filesystem or socket error.
    #[error("relay socket {path}: {cause}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What failed (in the message, not a `source()`: each OS text is printed once).
        cause: io::Error,
    },
}

/// Removes the socket file when dropped.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
}

impl SocketGuard {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), "could not remove socket: {e}");
            }
        }
    }
}

/// Binds the relay socket per `cfg` (see the module doc for the rules).
pub fn bind(cfg: &RelayConfig) -> Result<(UnixListener, SocketGuard), RelayError> {
    let path = &cfg.socket_path;
    let io_err = |cause| RelayError::Io {
        path: path.clone(),
        cause,
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode(cfg.socket_mode))
                .create(dir)
                .map_err(io_err)?;
            // The process umask (typically 022) clears group bits at creation: set them.
            std::fs::set_permissions(
                dir,
                std::fs::Permissions::from_mode(dir_mode(cfg.socket_mode)),
            )
            .map_err(io_err)?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(RelayError::InUse(path.clone())),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                tracing::warn!(path = %path.display(), "removing stale socket left by a previous run");
                std::fs::remove_file(path).map_err(io_err)?;
            }
            Err(e) => return Err(io_err(e)),
        },
        Ok(_) => return Err(RelayError::NotASocket(path.clone())),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    let guard = SocketGuard { path: path.clone() };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(cfg.socket_mode))
        .map_err(io_err)?;
    Ok((listener, guard))
}

/// Mode of a socket directory mdrelay creates: the socket's read/write bits plus search (x)
/// wherever read is granted, so `600` → `700` and `660` → `770` (the group can reach the socket).
pub fn dir_mode(socket_mode: u32) -> u32 {
    let r = socket_mode & 0o444;
    (socket_mode & 0o666) | (r >> 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_mode_follows_socket_mode() {
        assert_eq!(dir_mode(0o600), 0o700);
        assert_eq!(dir_mode(0o660), 0o770);
        assert_eq!(dir_mode(0o666), 0o777);
        assert_eq!(dir_mode(0o640), 0o750);
    }

    /// Defect 10: the OS error text appeared twice in what `main` prints (`{:#}`): once in the
    /// message and once more as the error's source.
    #[test]
    fn defect10_os_error_text_appears_once() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let cfg = RelayConfig {
            socket_path: file.join("relay.sock"),
            socket_mode: 0o600,
            max_subscribers: 1,
            max_pending_bytes: 1 << 16,
            heartbeat_interval: std::time::Duration::from_secs(1),
            drain_timeout: std::time::Duration::ZERO,
            hello_timeout: std::time::Duration::ZERO,
            allowed_uids: Vec::new(),
        };
        let e = bind(&cfg).unwrap_err();
        assert!(matches!(e, RelayError::Io { .. }), "{e:?}");
        let text = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(text.matches("os error").count(), 1, "{text}");
        assert!(text.contains("relay.sock"), "{text}");
    }
}
