//! Thread placement (`[threads]`): which core a named thread is pinned to, and pinning it.
//! Every thread that can be pinned — collectors, consumer, writer, recorder, http — goes
//! through [`pin_current_thread`], so a core that does not exist, or a pin the OS refuses, is a
//! warning and the thread runs unpinned; nothing fails because of placement.

use std::collections::BTreeMap;

/// Where a named thread runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the OS schedules it.
    Unpinned,
    /// Pinned to this core id (skipped with a warning when the core does not exist).
    Core(usize),
    /// Pinned when the machine has enough cores to spare one (consumer only).
    Auto,
}

/// Cores a machine needs before a thread may have one to itself (`auto` placement pins the
/// consumer, `auto` idle spins it): below this the collectors, the writer and the subscribers
/// need every core the consumer would hold.
pub const SPARE_CORE_MIN: usize = 4;

/// Whether this machine has [`SPARE_CORE_MIN`] cores or more.
pub fn has_spare_core() -> bool {
    core_affinity::get_core_ids().map_or(0, |c| c.len()) >= SPARE_CORE_MIN
}

/// The core the thread `thread_name` should be pinned to, if any, per `[threads]`.
pub fn core_for(threads: &BTreeMap<String, Placement>, thread_name: &str) -> Option<usize> {
    match threads.get(thread_name) {
        Some(Placement::Core(c)) => Some(*c),
        Some(Placement::Auto) => {
            let cores = core_affinity::get_core_ids().unwrap_or_default();
            if cores.len() >= SPARE_CORE_MIN {
                cores.last().map(|c| c.id)
            } else {
                tracing::info!(
                    thread = thread_name,
                    cores = cores.len(),
                    "auto placement: fewer than 4 cores, not pinning"
                );
                None
            }
        }
        Some(Placement::Unpinned) | None => None,
    }
}

/// Pins the calling thread to `core` (`None`: leaves it where it is), warning (not failing) when impossible.
pub fn pin_current_thread(thread_name: &str, core: Option<usize>) {
    let Some(core) = core else { return };
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    match cores.into_iter().find(|c| c.id == core) {
        Some(c) => {
            if core_affinity::set_for_current(c) {
                tracing::info!(thread = thread_name, core, "pinned");
            } else {
                tracing::warn!(
                    thread = thread_name,
                    core,
                    "could not pin; running unpinned"
                );
            }
        }
        None => tracing::warn!(
            thread = thread_name,
            core,
            "core does not exist; running unpinned"
        ),
    }
}
