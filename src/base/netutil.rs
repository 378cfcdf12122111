//! Small socket helpers shared by the threads that accept connections.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};

/// Waits up to `timeout` for `fd` to become readable (a listener: a connection to accept).
/// Returns Ok(false) on timeout or signal interruption.
pub fn wait_readable<F: AsFd>(fd: &F, timeout: Duration) -> io::Result<bool> {
    let ts = Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    match poll(&mut fds, Some(&ts)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
