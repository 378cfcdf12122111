//! The start-up checks that need the file system, run after validation by `mdrelay run` (and
//! `replay`) before any thread starts and by `mdrelay check-config`, so the two can never
//! disagree: the relay socket's path fits `sun_path` and its directory exists and is writable or
//! can be created; the CSV directory (`[writer]`, when enabled) and the recording directory
//! (when a feed records) likewise; every feed's `tls_ca_file` holds certificates; the replay
//! exchange's recordings and, when the bridge is enabled, the NATS files can be read.
//!
//! Nothing is created or changed: a directory that does not exist yet passes when its nearest
//! existing ancestor is a directory the process may write into and search (`access(2)`, which
//! also answers for root). An error names the key and carries the OS error's text once.

use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use rustix::fs::Access;

use super::error::{invalid, ConfigError};
use super::Config;

/// Longest socket path `bind(2)` takes, bytes: `sun_path` is 108 bytes with the closing NUL.
pub const MAX_SOCKET_PATH_BYTES: usize = 107;

/// Checks everything `cfg` needs from the file system; the first problem is the error.
pub fn preflight(cfg: &Config) -> Result<(), ConfigError> {
    socket("relay.socket_path", &cfg.relay.socket_path)?;
    if let Some(w) = &cfg.writer {
        writable_dir("writer.data_dir", &w.data_dir)?;
    }
    if cfg.feeds.iter().any(|f| f.record) {
        writable_dir("recording.dir", &cfg.recording.dir)?;
    }
    for f in &cfg.feeds {
        if let Some(ca) = &f.tls_ca_file {
            crate::feed::collector::tls_config(ca)
                .map_err(|m| invalid(format!("feeds.{}.tls_ca_file", f.name), m))?;
        }
    }
    if let Some(r) = &cfg.replay {
        for (venue, paths) in &r.sources {
            for p in paths {
                readable(&format!("replay.sources.{}", venue.name()), p)?;
            }
        }
    }
    let n = &cfg.nats;
    if n.enabled {
        for (key, file) in [
            ("nats.credentials_file", &n.credentials_file),
            ("nats.tls_ca_file", &n.tls_ca_file),
            ("nats.tls_cert_file", &n.tls_cert_file),
            ("nats.tls_key_file", &n.tls_key_file),
        ] {
            if let Some(p) = file {
                readable(key, p)?;
            }
        }
    }
    Ok(())
}

/// The socket path fits `sun_path`, is not something other than a socket, and its directory
/// can hold it.
fn socket(key: &str, path: &Path) -> Result<(), ConfigError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH_BYTES {
        return Err(invalid(
            key,
            format!(
                "`{}` is {len} bytes: a Unix socket path holds at most {MAX_SOCKET_PATH_BYTES} \
                 (sun_path is 108 bytes with the closing NUL); choose a shorter path",
                path.display()
            ),
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(invalid(
                key,
                format!(
                    "`{}` exists and is not a socket; mdrelay will not remove it",
                    path.display()
                ),
            ))
        }
        _ => {}
    }
    writable_dir(key, path.parent().unwrap_or(Path::new("")))
}

/// `dir` is a directory the process can create files in, or can be created: its nearest
/// existing ancestor is a writable, searchable directory.
fn writable_dir(key: &str, dir: &Path) -> Result<(), ConfigError> {
    for a in dir.ancestors() {
        let a = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        // What is wrong with `a`, said of `dir` itself or of the ancestor that stops its creation.
        let refuse = |why: String| {
            let message = if a == dir {
                format!("`{}` {why}", a.display())
            } else {
                format!(
                    "`{}` cannot be created: `{}` {why}",
                    dir.display(),
                    a.display()
                )
            };
            invalid(key, message)
        };
        match std::fs::metadata(a) {
            Ok(m) if m.is_dir() => {
                return rustix::fs::access(a, Access::WRITE_OK | Access::EXEC_OK).map_err(|e| {
                    let e = std::io::Error::from(e);
                    if a == dir {
                        invalid(
                            key,
                            format!("directory `{}` is not writable: {e}", a.display()),
                        )
                    } else {
                        refuse(format!("is not writable: {e}"))
                    }
                });
            }
            Ok(_) => return Err(refuse("is not a directory".to_owned())),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {}
            Err(e) => return Err(invalid(key, format!("`{}`: {e}", a.display()))),
        }
    }
    Ok(())
}

/// `path` can be opened for reading.
fn readable(key: &str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| invalid(key, format!("`{}`: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{load, Sources};

    fn with_sets(sets: &[String]) -> Result<Config, ConfigError> {
        load(&Sources {
            sets: sets.to_vec(),
            ..Sources::default()
        })
    }

    fn key_of(r: Result<(), ConfigError>) -> String {
        match r {
            Err(ConfigError::Invalid { key, message }) => format!("{key}: {message}"),
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    /// A relay on `socket` with only a Binance feed to nowhere (nothing is connected).
    fn binance_only(socket: &Path) -> Vec<String> {
        vec![
            format!("relay.socket_path={:?}", socket.display().to_string()),
            "replay.enabled=false".into(),
            "feeds.binance.url=\"wss://127.0.0.1:1/x\"".into(),
            "feeds.binance.rest_url=\"http://127.0.0.1:1\"".into(),
            "feeds.coinbase.enabled=false".into(),
            "feeds.kraken_v1.enabled=false".into(),
            "feeds.binance_usdm.enabled=false".into(),
        ]
    }

    #[test]
    fn a_file_in_the_way_of_a_directory_names_the_key_and_nothing_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let with_data = |data: &Path| {
            let mut sets = binance_only(&tmp.path().join("s/relay.sock"));
            sets.push("writer.enabled=true".into());
            sets.push(format!("writer.data_dir={:?}", data.display().to_string()));
            sets
        };
        let ok = with_sets(&with_data(&tmp.path().join("a/b/c"))).unwrap();
        preflight(&ok).unwrap();
        assert!(!tmp.path().join("a").exists(), "preflight creates nothing");
        assert!(!tmp.path().join("s").exists(), "preflight creates nothing");
        for data in [file.clone(), file.join("csv")] {
            let err = key_of(preflight(&with_sets(&with_data(&data)).unwrap()));
            assert!(err.starts_with("writer.data_dir: "), "{err}");
            assert!(err.contains("is not a directory"), "{err}");
        }
        for (socket, why) in [
            (file.join("relay.sock"), "is not a directory"),
            (file.clone(), "is not a socket"),
        ] {
            let err = key_of(preflight(&with_sets(&binance_only(&socket)).unwrap()));
            assert!(err.starts_with("relay.socket_path: "), "{err}");
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn long_socket_paths_and_unreadable_files_name_their_key() {
        let long = PathBuf::from(format!("/tmp/{}/relay.sock", "x".repeat(100)));
        let err = key_of(preflight(&with_sets(&binance_only(&long)).unwrap()));
        assert!(err.starts_with("relay.socket_path: "), "{err}");
        assert!(err.contains("at most 107"), "{err}");
        let tmp = tempfile::tempdir().unwrap();
        let mut sets = binance_only(&tmp.path().join("relay.sock"));
        sets.push("feeds.binance.tls_ca_file=\"/nonexistent/ca.pem\"".into());
        sets.push("writer.enabled=false".into());
        let err = key_of(preflight(&with_sets(&sets).unwrap()));
        assert!(err.starts_with("feeds.binance.tls_ca_file: "), "{err}");
        let msg = err.to_lowercase();
        assert_eq!(msg.matches("no such file").count(), 1, "{err}");
    }
}
