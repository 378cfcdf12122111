//! Soak: the real binary on the demo feeds at full speed (every recording looping, so every feed
//! disconnects and reconnects each time its recording ends), with a fast subscriber reading
//! everything and a lossy subscriber that reads slowly (skipped forward over and over). Resident
//! memory and open descriptors of the relay process must stay flat. `MDRELAY_SOAK_SECS` sets the
//! length (60 s in `make test`, longer in `make soak`); the figures are printed.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mdrelay::relay::client::RelayClient;
use mdrelay::wire::subscription::Filter;
use rustix::process::{kill_process, Pid, Signal};

use crate::util;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn memory_and_descriptors_stay_flat_under_load_with_reconnects_and_a_slow_subscriber() {
    let secs: u64 = std::env::var("MDRELAY_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let _wd = util::Watchdog::new("soak", secs + 120);
    let (_dir, sock) = util::temp_socket();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mdrelay"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "--set",
            "replay.speed=0",
            "--set",
            "writer.enabled=false",
        ])
        .args([
            "--set",
            "http.listen=\"127.0.0.1:0\"",
            "--set",
            "consumer.idle=\"park\"",
        ])
        .args(["--set", "relay.max_pending_bytes=1048576"])
        .arg("--set")
        .arg(format!(
            "relay.socket_path={:?}",
            sock.display().to_string()
        ))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(util::wait_until(Duration::from_secs(60), || {
        RelayClient::connect(&sock).is_ok()
    }));

    let fast = thread::spawn({
        let sock = sock.clone();
        move || {
            let mut c = RelayClient::connect(&sock).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut n = 0u64;
            while let Some(_rx) = c.next_frame().expect("fast subscriber: clean stream") {
                n += 1;
            }
            n
        }
    });
    let slow = thread::spawn({
        let sock = sock.clone();
        move || {
            let mut c = RelayClient::connect_filtered(
                &sock,
                &[Filter {
                    lossy: true,
                    ..Filter::all()
                }],
            )
            .unwrap();
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut n = 0u64;
            loop {
                match c.next_frame() {
                    Ok(Some(_)) => n += 1,
                    Ok(None) => return n,
                    // At shutdown the relay waits drain_timeout_ms for it, then closes it
                    // wherever its socket buffer was (it reads too slowly to finish).
                    Err(mdrelay::relay::client::ClientError::Truncated(_)) => return n,
                    Err(e) => panic!("slow subscriber: {e}"),
                }
                if n % 64 == 0 {
                    thread::sleep(Duration::from_millis(20));
                }
            }
        }
    });

    // Warm-up: allocator arenas, buffers and books reach their working size.
    let warmup = Duration::from_secs(secs.min(60) / 4);
    thread::sleep(warmup);
    let start = Instant::now();
    let (mut rss, mut fd) = (Vec::new(), Vec::new());
    while start.elapsed() < Duration::from_secs(secs) - warmup {
        rss.push(rss_kib(pid));
        fd.push(fds(pid));
        thread::sleep(Duration::from_secs(2));
    }
    kill_process(Pid::from_child(&child), Signal::INT).unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stderr}");
    let fast_frames = fast.join().unwrap();
    let slow_frames = slow.join().unwrap();

    let (first, max) = (rss[0], *rss.iter().max().unwrap());
    let (fd_min, fd_max) = (*fd.iter().min().unwrap(), *fd.iter().max().unwrap());
    eprintln!(
        "soak {secs} s: rss after warm-up {first} KiB, max {max} KiB (+{} KiB); fds {fd_min}..{fd_max}; \
         fast subscriber {fast_frames} frames, slow lossy subscriber {slow_frames} frames",
        max - first
    );
    eprintln!("{stderr}");
    // Reconnects happened (every recording's end closes the feed) and accounting balanced.
    assert!(stderr.contains("accounting balanced"), "{stderr}");
    let reconnects: u64 = stderr
        .lines()
        .filter(|l| l.split_whitespace().count() == 14)
        .filter_map(|l| l.split_whitespace().nth(9)?.parse::<u64>().ok())
        .sum();
    assert!(
        reconnects > 0,
        "feeds reconnected during the soak\n{stderr}"
    );
    assert!(fast_frames > 10_000, "{fast_frames}");
    // Flat: no growth beyond allocator noise, no descriptor leak.
    assert!(
        max - first < 32 * 1024,
        "rss grew {} KiB: {rss:?}",
        max - first
    );
    // Descriptors come and go with the reconnecting feeds (a WebSocket each, Binance's REST
    // snapshot, subscribers): bounded, and no drift upwards over the run.
    assert!(fd_max - fd_min <= 12, "descriptors {fd:?}");
    let n = fd.len().min(5);
    let early = *fd[..n].iter().max().unwrap();
    let late = *fd[fd.len() - n..].iter().min().unwrap();
    assert!(late <= early, "descriptors drift upwards: {fd:?}");
}
