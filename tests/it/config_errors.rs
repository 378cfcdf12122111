//! Configuration errors at start-up, through the real binary: `mdrelay run` exits 2 naming the
//! key before anything starts (issue 17, defect 10).

use std::path::Path;

use crate::util;

/// `mdrelay run` in the repository with `sets`, the default socket directory under `runtime` and
/// nothing inherited from the test's environment: exit code and stderr.
fn run(runtime: &Path, sets: &[String]) -> (Option<i32>, String) {
    let mut c = util::mdrelay_in(runtime);
    c.arg("run");
    for s in sets {
        c.arg("--set").arg(s);
    }
    let out = c.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Defect 10: a socket path over 108 bytes, or in a directory that cannot be written, exited 1
/// naming the path instead of 2 naming `relay.socket_path`. (Root ignores permission bits, so a
/// regular file stands where the socket's directory must be.)
#[test]
fn defect10_socket_path_too_long_or_unwritable_exits_2_naming_the_key() {
    let _wd = util::Watchdog::new("defect10_socket_path", 60);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let long = format!("/tmp/{}/relay.sock", "x".repeat(110));
    for (path, why) in [
        (long, "at most 107"),
        (
            file.join("relay.sock").display().to_string(),
            "is not a directory",
        ),
    ] {
        let (code, stderr) = run(tmp.path(), &[format!("relay.socket_path={path:?}")]);
        assert_eq!(code, Some(2), "{path}: {stderr}");
        assert!(stderr.contains("relay.socket_path"), "{path}: {stderr}");
        assert!(stderr.contains(why), "{path}: {stderr}");
        assert!(stderr.matches("os error").count() <= 1, "{stderr}");
    }
}

/// Defect 10: an unknown channel name was accepted and the feed looped on reconnects.
#[test]
fn defect10_unknown_channel_exits_2_naming_the_key() {
    let _wd = util::Watchdog::new("defect10_unknown_channel", 60);
    let tmp = tempfile::tempdir().unwrap();
    let (code, stderr) = run(
        tmp.path(),
        &["feeds.binance.channels=[\"nosuch\"]".to_owned()],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("feeds.binance.channels"), "{stderr}");
    assert!(
        stderr.contains("bookTicker"),
        "lists the accepted names: {stderr}"
    );
}
