//! Names on disk, shared by both persistence threads (`writer` and `recorder`): a venue, symbol
//! or feed name as one safe path component, and opening a file with its directories created.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// Longest path component [`path_component`] produces, bytes (file systems allow 255).
pub const MAX_COMPONENT_BYTES: usize = 128;

/// A venue or symbol as one safe path component: `[A-Za-z0-9._-]` kept, `/` → `-` (so
/// `XBT/EUR` reads `XBT-EUR`), anything else → `_`, a leading `.` → `_` (no hidden files, no
/// `.`/`..`), cut to [`MAX_COMPONENT_BYTES`]. Not injective (`BTC/USD` and `BTC-USD` meet): the
/// writer detects two names on one directory and suffixes the later one with `~<id hex>`, a
/// character this mapping never emits.
pub fn path_component(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
            '/' => '-',
            _ => '_',
        })
        .collect();
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    if out.is_empty() {
        out.push('_');
    }
    out.truncate(MAX_COMPONENT_BYTES); // all ASCII: any byte index is a char boundary
    out
}

/// Creates `path`'s directory (with parents) and opens `path` with `opts`.
pub fn open_creating_dirs(path: &Path, opts: &OpenOptions) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    opts.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components_are_safe() {
        let cases: &[(&str, &str)] = &[
            ("ETHUSDT", "ETHUSDT"),
            ("BTC-USD", "BTC-USD"),
            ("XBT/EUR", "XBT-EUR"),
            ("PI_XBTUSD", "PI_XBTUSD"),
            ("a b:c*d", "a_b_c_d"),
            (".", "_"),
            ("..", "_."),
            ("../etc", "_.-etc"),
            (".hidden", "_hidden"),
            ("ÉTH", "_TH"),
            ("1000SHIB.P", "1000SHIB.P"),
        ];
        for (name, want) in cases {
            assert_eq!(path_component(name), *want, "{name}");
        }
        assert_eq!(path_component(&"x".repeat(300)).len(), MAX_COMPONENT_BYTES);
    }
}
