//! The persistence threads' configuration: CSV (`[writer]`) and raw recording
//! (`[recording]`), built by the `config` module.

use std::path::PathBuf;
use std::time::Duration;

use crate::persist::layout::Layout;
use crate::persist::writer::WriterError;

/// Raw recording (`[recording]`; per feed `record`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingConfig {
    /// Root directory: `<dir>/<venue>/<feed>_<YYYYMMDD>.txt.gz` (`mdrelay` layout) or
    /// `<dir>/<venue>/<feed>/<symbol>_<YYYYMMDD>.gz` (`hftbacktest` layout).
    pub dir: PathBuf,
    /// Files and what goes in them (`layout`). Default [`Layout::Mdrelay`].
    pub layout: Layout,
    /// Queue capacity towards the recorder thread, messages.
    pub capacity_messages: usize,
    /// Longest time before recorded lines reach the file (a gzip member is finished then).
    pub flush_interval: Duration,
}

/// How the writer thread behaves. [`WriterConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    /// Root of the CSV tree; created (with parents) when the first file is opened.
    pub data_dir: PathBuf,
    /// Channel capacity, records (~160 bytes each); ≥ 1. Default 65 536 (~10 MiB).
    pub capacity_records: usize,
    /// Longest time a row stays in a buffer before it is written to the OS; > 0. Default 1 s.
    pub flush_interval: Duration,
    /// A file's buffer is written out once it holds this many bytes; ≥ 1. Default 64 KiB.
    /// Memory bound: `max_open_files × (flush_bytes + one row)`.
    pub flush_bytes: usize,
    /// Most files open at once; the least recently used is closed beyond it; ≥ 1. Default 64.
    pub max_open_files: usize,
    /// fsync (`sync_data`) each file when it is closed: rotation, eviction, shutdown. Default true.
    pub fsync_on_close: bool,
    /// First wait before a file that failed is tried again; > 0. Default 500 ms.
    pub retry_initial: Duration,
    /// Longest wait between tries; doubles from `retry_initial` up to this; ≥ `retry_initial`.
    /// Default 30 s.
    pub retry_max: Duration,
    /// At most one error log line per this period; the others are counted into the next. Default 10 s.
    pub error_log_interval: Duration,
    /// Core to pin the thread to (`[threads] writer`); `None` = not pinned.
    pub core: Option<usize>,
}

impl WriterConfig {
    /// The defaults, writing under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> WriterConfig {
        WriterConfig {
            data_dir: data_dir.into(),
            capacity_records: 65_536,
            flush_interval: Duration::from_secs(1),
            flush_bytes: 64 * 1024,
            max_open_files: 64,
            fsync_on_close: true,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            error_log_interval: Duration::from_secs(10),
            core: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), WriterError> {
        let bad = |what| Err(WriterError::InvalidConfig(what));
        if self.capacity_records == 0 {
            return bad("capacity_records must be ≥ 1");
        }
        if self.flush_bytes == 0 {
            return bad("flush_bytes must be ≥ 1");
        }
        if self.max_open_files == 0 {
            return bad("max_open_files must be ≥ 1");
        }
        if self.flush_interval.is_zero() {
            return bad("flush_interval must be > 0");
        }
        if self.retry_initial.is_zero() || self.retry_max < self.retry_initial {
            return bad("retry_initial must be > 0 and ≤ retry_max");
        }
        Ok(())
    }
}
