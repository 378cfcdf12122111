//! Instrument names: the table the consumer registers them in ([`register`], on the consumer
//! thread) and the `writer` thread reads on an id it has not met, the check a name passes first,
//! and each instrument's directory ([`Directories`], on the `writer` thread), `~<id hex>`-suffixed
//! when its name maps to a directory another instrument already has.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::base::stats::Counter;
use crate::market::instrument::InstrumentId;
use crate::persist::paths::path_component;

use super::RegisterError;

/// Venue and symbol of a registered id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Name {
    pub(super) venue: Box<str>,
    pub(super) symbol: Box<str>,
}

/// Registered names, written by the consumer once per instrument, read by the writer on a miss.
pub(super) type Names = Arc<Mutex<FxHashMap<InstrumentId, Name>>>;

/// Records `venue`/`symbol` as the name of `id` (see [`super::WriterHandle::register`]).
pub(super) fn register(
    names: &Names,
    id: InstrumentId,
    venue: &str,
    symbol: &str,
) -> Result<(), RegisterError> {
    check_name("venue", venue)?;
    check_name("symbol", symbol)?;
    let mut names = names.lock();
    match names.get(&id) {
        Some(n) if &*n.venue == venue && &*n.symbol == symbol => Ok(()),
        Some(n) => Err(RegisterError::Conflict {
            id,
            old: format!("{}:{}", n.venue, n.symbol),
            new: format!("{venue}:{symbol}"),
        }),
        None => {
            names.insert(
                id,
                Name {
                    venue: venue.into(),
                    symbol: symbol.into(),
                },
            );
            Ok(())
        }
    }
}

fn check_name(what: &'static str, name: &str) -> Result<(), RegisterError> {
    let why = if name.is_empty() {
        "empty"
    } else if name.len() > 255 {
        "longer than 255 bytes"
    } else if name.chars().any(char::is_control) {
        "holds a control character"
    } else {
        return Ok(());
    };
    Err(RegisterError::InvalidName {
        what,
        name: name.to_owned(),
        why,
    })
}

/// Where an instrument's files go.
#[derive(Debug)]
pub(super) struct Instrument {
    pub(super) name: Name,
    /// `data_dir/<venue>/<symbol>` (possibly `~<id>`-suffixed); unique among instruments.
    pub(super) dir: PathBuf,
}

/// The instruments the `writer` thread has met, and their directories.
#[derive(Debug)]
pub(super) struct Directories {
    data_dir: PathBuf,
    /// Instruments met so far.
    instruments: FxHashMap<InstrumentId, Arc<Instrument>>,
    /// Instrument directory → the id that owns it (collision detection).
    dirs: FxHashMap<PathBuf, InstrumentId>,
}

impl Directories {
    /// No instrument met yet; directories go under `data_dir`.
    pub(super) fn new(data_dir: PathBuf) -> Directories {
        Directories {
            data_dir,
            instruments: FxHashMap::default(),
            dirs: FxHashMap::default(),
        }
    }

    /// The instrument of `id`, resolving its directory the first time (None: never registered
    /// in `names`). A collision is logged and counted in `collisions`.
    pub(super) fn instrument(
        &mut self,
        id: InstrumentId,
        names: &Names,
        collisions: &Counter,
    ) -> Option<Arc<Instrument>> {
        if let Some(i) = self.instruments.get(&id) {
            return Some(Arc::clone(i));
        }
        let name = names.lock().get(&id).cloned()?;
        let venue_dir = self.data_dir.join(path_component(&name.venue));
        let mut dir = venue_dir.join(path_component(&name.symbol));
        if let Some(&other) = self.dirs.get(&dir) {
            let suffixed = format!("{}~{id:08x}", path_component(&name.symbol));
            tracing::warn!(
                venue = %name.venue, symbol = %name.symbol, id, other_id = other,
                dir = %dir.display(), "writer: two instruments map to one directory; this one gets a suffix"
            );
            collisions.inc();
            dir = venue_dir.join(suffixed);
        }
        self.dirs.insert(dir.clone(), id);
        let inst = Arc::new(Instrument { name, dir });
        self.instruments.insert(id, Arc::clone(&inst));
        Some(inst)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testkit::*;
    use super::super::{RegisterError, WriterHandle};
    use crate::market::fixed::SCALE;

    #[test]
    fn colliding_directories_get_a_suffix() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = WriterHandle::spawn(cfg(tmp.path())).unwrap();
        let a = register(&w, "binance", "BTC/USD");
        let b = register(&w, "binance", "BTC-USD");
        w.try_send(trade(a, MIDNIGHT, SCALE, SCALE)).unwrap();
        w.try_send(trade(b, MIDNIGHT, 2 * SCALE, SCALE)).unwrap();
        let stats = Arc::clone(w.stats());
        w.close().unwrap();
        assert_eq!(stats.writer.path_collisions.get(), 1);
        let (_, ra) = load(&tmp.path().join("binance/BTC-USD/2024-08-09/trades.csv"));
        let (_, rb) = load(
            &tmp.path()
                .join(format!("binance/BTC-USD~{b:08x}/2024-08-09/trades.csv")),
        );
        assert_eq!(
            (ra[0][5].as_str(), rb[0][5].as_str()),
            ("BTC/USD", "BTC-USD")
        );
    }

    #[test]
    fn registration_is_checked_and_unknown_ids_are_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = WriterHandle::spawn(cfg(tmp.path())).unwrap();
        assert!(matches!(
            w.register(1, "", "X"),
            Err(RegisterError::InvalidName { what: "venue", .. })
        ));
        assert!(matches!(
            w.register(1, "v", "a\nb"),
            Err(RegisterError::InvalidName { what: "symbol", .. })
        ));
        w.register(1, "v", "A").unwrap();
        w.register(1, "v", "A").unwrap(); // idempotent
        assert!(matches!(
            w.register(1, "v", "B"),
            Err(RegisterError::Conflict { id: 1, .. })
        ));
        w.try_send(trade(99, MIDNIGHT, SCALE, SCALE)).unwrap();
        let stats = Arc::clone(w.stats());
        w.close().unwrap();
        assert_eq!(stats.writer.dropped_unknown.get(), 1);
        assert_accounted(&stats);
    }
}
