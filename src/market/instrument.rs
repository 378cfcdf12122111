//! Instrument identity: a venue plus the venue's own symbol (quote currency included, so
//! `BTC-USD` and `BTC-EUR` are different instruments, and `BTCUSDT` on two venues is two
//! instruments) maps to a stable 32-bit id.
//!
//! The id is FNV-1a (32-bit) over the UTF-8 bytes of `"<venue>:<symbol>"`, with 0 reserved for
//! "no instrument" (a result of 0 becomes 1). Being a pure function of the name, it is the same in
//! every run and every process, and a client in another language can compute it
//! (docs/PROTOCOL.md). Collisions are detected, not assumed away: the consumer refuses a second name
//! for an id it already knows ([`Registry::insert`]) and counts it.
//!
//! Pure data; any thread.

use rustc_hash::FxHashMap;

/// Stable numeric id of an instrument; 0 means "none" (feed-wide status, heartbeats).
pub type InstrumentId = u32;

/// The exchanges mdrelay speaks to, one per wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Venue {
    /// Binance spot combined streams.
    Binance,
    /// Coinbase Exchange WebSocket feed.
    Coinbase,
    /// Kraken WebSocket v2.
    Kraken,
    /// Kraken WebSocket v1 (legacy).
    KrakenV1,
    /// Binance USD-M futures (`fstream`): USDT/USDC-margined perpetual and delivery contracts
    /// (`BTCUSDT`, `ETHUSDT_240927`); sizes in base units.
    BinanceUsdm,
    /// Binance COIN-M futures (`dstream`): coin-margined contracts (`BTCUSD_PERP`,
    /// `ETHUSD_240927`); sizes in **contracts** (100 USD for BTC, 10 USD for the others, per
    /// Binance's `exchangeInfo` `contractSize`), kept exactly as the venue sends them.
    BinanceCoinm,
    /// OKX WebSocket v5 public channels.
    Okx,
    /// Bybit WebSocket v5 public streams (one feed per category: spot, linear, inverse).
    Bybit,
    /// Gemini market data v2 (`l2`).
    Gemini,
    /// Hyperliquid WebSocket.
    Hyperliquid,
}

impl Venue {
    /// Every venue, in wire-code order.
    pub const ALL: [Venue; 10] = [
        Venue::Binance,
        Venue::Coinbase,
        Venue::Kraken,
        Venue::KrakenV1,
        Venue::BinanceUsdm,
        Venue::BinanceCoinm,
        Venue::Okx,
        Venue::Bybit,
        Venue::Gemini,
        Venue::Hyperliquid,
    ];

    /// The venue's name as it appears in InstrumentDefs, JSON and configuration.
    pub fn name(self) -> &'static str {
        match self {
            Venue::Binance => "binance",
            Venue::Coinbase => "coinbase",
            Venue::Kraken => "kraken",
            Venue::KrakenV1 => "kraken_v1",
            Venue::BinanceUsdm => "binance_usdm",
            Venue::BinanceCoinm => "binance_coinm",
            Venue::Okx => "okx",
            Venue::Bybit => "bybit",
            Venue::Gemini => "gemini",
            Venue::Hyperliquid => "hyperliquid",
        }
    }

    /// True for the Binance family (spot, USD-M, COIN-M): combined streams, and depth books
    /// started from a REST snapshot (recordings carry it as a `{"lastUpdateId":…}` line).
    pub fn is_binance(self) -> bool {
        matches!(
            self,
            Venue::Binance | Venue::BinanceUsdm | Venue::BinanceCoinm
        )
    }

    /// Parses a venue name as written by [`Venue::name`].
    pub fn from_name(s: &str) -> Option<Venue> {
        Venue::ALL.into_iter().find(|v| v.name() == s)
    }
}

impl std::fmt::Display for Venue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The stable id of `symbol` on the venue named `venue` (see the module doc).
pub fn instrument_id(venue: &str, symbol: &str) -> InstrumentId {
    let h = fnv1a32(venue.as_bytes().iter().chain(b":").chain(symbol.as_bytes()));
    if h == 0 {
        1
    } else {
        h
    }
}

/// FNV-1a, 32-bit (offset basis 0x811c9dc5, prime 0x01000193).
fn fnv1a32<'a>(bytes: impl Iterator<Item = &'a u8>) -> u32 {
    bytes.fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Name of an instrument: its venue and venue symbol.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstrumentName {
    /// Venue name ([`Venue::name`] for the built-in venues).
    pub venue: String,
    /// The venue's own symbol, unchanged (`ETHUSDT`, `BTC-USD`, `XBT/EUR`).
    pub symbol: String,
}

/// Two different names hashed to the same id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instrument id {id} of {new_venue}:{new_symbol} collides with {old_venue}:{old_symbol}")]
pub struct IdCollision {
    /// The contested id.
    pub id: InstrumentId,
    /// The name that holds the id.
    pub old_venue: String,
    /// The name that holds the id.
    pub old_symbol: String,
    /// The name that was refused.
    pub new_venue: String,
    /// The name that was refused.
    pub new_symbol: String,
}

/// Id ↔ name table with collision detection.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    by_id: FxHashMap<InstrumentId, InstrumentName>,
}

impl Registry {
    /// Registers `venue:symbol`, returning its id; idempotent for the same name.
    pub fn insert(&mut self, venue: &str, symbol: &str) -> Result<InstrumentId, IdCollision> {
        let id = instrument_id(venue, symbol);
        match self.by_id.get(&id) {
            Some(n) if n.venue == venue && n.symbol == symbol => Ok(id),
            Some(n) => Err(IdCollision {
                id,
                old_venue: n.venue.clone(),
                old_symbol: n.symbol.clone(),
                new_venue: venue.to_owned(),
                new_symbol: symbol.to_owned(),
            }),
            None => {
                self.by_id.insert(
                    id,
                    InstrumentName {
                        venue: venue.to_owned(),
                        symbol: symbol.to_owned(),
                    },
                );
                Ok(id)
            }
        }
    }

    /// The name registered for `id`.
    pub fn get(&self, id: InstrumentId) -> Option<&InstrumentName> {
        self.by_id.get(&id)
    }

    /// Number of instruments known.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no instrument is known.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_keep_quote_currency_and_venue_apart() {
        // Golden values: FNV-1a 32 of "binance:BTCUSDT" etc. These are part of the protocol.
        assert_eq!(
            instrument_id("binance", "ETHUSDT"),
            instrument_id("binance", "ETHUSDT")
        );
        assert_ne!(
            instrument_id("coinbase", "BTC-USD"),
            instrument_id("coinbase", "BTC-EUR")
        );
        assert_ne!(
            instrument_id("binance", "BTCUSDT"),
            instrument_id("kraken", "BTCUSDT")
        );
        // Golden values (also in docs/PROTOCOL.md); the first is FNV-1a's published vector for "a".
        assert_eq!(fnv1a32(b"a".iter()), 0xe40c_292c);
        assert_eq!(instrument_id("binance", "ETHUSDT"), 0xa4f6_c29c);
    }

    #[test]
    fn spot_and_futures_of_one_symbol_are_different_instruments() {
        let spot = instrument_id(Venue::Binance.name(), "BTCUSDT");
        let usdm = instrument_id(Venue::BinanceUsdm.name(), "BTCUSDT");
        let coinm = instrument_id(Venue::BinanceCoinm.name(), "BTCUSD_PERP");
        assert_ne!(spot, usdm);
        assert_ne!(usdm, coinm);
        // FNV-1a 32 of "binance_usdm:BTCUSDT", computed independently (Python:
        // h=0x811c9dc5; for b in s.encode(): h=((h^b)*0x01000193)&0xffffffff).
        assert_eq!(usdm, 0x6a93_55f4);
        let mut r = Registry::default();
        assert_eq!(r.insert("binance", "BTCUSDT"), Ok(spot));
        assert_eq!(r.insert("binance_usdm", "BTCUSDT"), Ok(usdm));
        assert_eq!(r.len(), 2);
        for v in Venue::ALL {
            assert_eq!(Venue::from_name(v.name()), Some(v));
            assert_eq!(
                serde_json::to_string(&v).unwrap(),
                format!("\"{}\"", v.name())
            );
        }
        assert!(Venue::BinanceCoinm.is_binance() && !Venue::Coinbase.is_binance());
    }

    #[test]
    fn registry_detects_collisions() {
        let mut r = Registry::default();
        let id = r.insert("binance", "ETHUSDT").unwrap();
        assert_eq!(r.insert("binance", "ETHUSDT"), Ok(id));
        // Forge a collision by planting another name under the id.
        r.by_id.insert(
            instrument_id("coinbase", "X"),
            InstrumentName {
                venue: "other".into(),
                symbol: "Y".into(),
            },
        );
        assert!(r.insert("coinbase", "X").is_err());
        assert_eq!(r.get(id).unwrap().symbol, "ETHUSDT");
    }
}
