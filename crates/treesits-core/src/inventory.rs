//! The tile inventory: what a map was made from, and the cheap check of what changed since.
//!
//! Per tile it records the acquisitions used (date, sensor, and the BOA and QAI files' names, sizes
//! and modification times), the mask's SHA-256 and a *fingerprint*: the SHA-256 of all of that. Two
//! listings with the same fingerprint used the same input files, so the tile's products can be
//! reused; a new acquisition, a removed or replaced file (new size or time) or a new mask changes it.
//! Only listings are compared, never file contents, so a check of hundreds of tiles costs one
//! directory listing per tile. The format is documented in `docs/formats.md` ("Tile inventory").

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Date, TileId};

/// `format` of an inventory file.
pub const INVENTORY_FORMAT: &str = "treesits-inventory";
/// `version` of the inventory format written here.
pub const INVENTORY_VERSION: u32 = 1;

/// A file as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub name: String,
    pub size: u64,
    /// Seconds since 1970-01-01 UTC.
    pub mtime: i64,
}

/// One acquisition of a tile: its BOA and QAI files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryAcquisition {
    pub date: Date,
    pub sensor: String,
    pub boa: FileStamp,
    pub qai: FileStamp,
}

/// What one tile's products were (or will be) made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileInventory {
    pub tile_id: TileId,
    /// Mask file name as `tiles.csv` gives it (none: every pixel).
    pub mask: Option<String>,
    pub mask_sha256: Option<String>,
    /// SHA-256 (hex) of the tile id, the mask's SHA-256 and every acquisition's files, in order.
    pub fingerprint: String,
    pub acquisitions: Vec<InventoryAcquisition>,
    /// When the products of this tile in the map were made (RFC 3339 UTC; the listing time of the
    /// run that made them), and by which software. An incremental run carries both over for the
    /// tiles it reuses. Not part of the fingerprint.
    #[serde(default)]
    pub made: Option<String>,
    #[serde(default)]
    pub software: BTreeMap<String, String>,
}

impl TileInventory {
    /// A tile's inventory with its fingerprint computed.
    pub fn new(
        tile_id: TileId,
        mask: Option<String>,
        mask_sha256: Option<String>,
        acquisitions: Vec<InventoryAcquisition>,
    ) -> TileInventory {
        let mut text = format!(
            "treesits-inventory-v1\n{tile_id}\nmask {}\n",
            mask_sha256.as_deref().unwrap_or("-")
        );
        for a in &acquisitions {
            text.push_str(&format!(
                "{} {} {} {} {} {} {} {}\n",
                a.date, a.sensor, a.boa.name, a.boa.size, a.boa.mtime, a.qai.name, a.qai.size, a.qai.mtime
            ));
        }
        TileInventory {
            tile_id,
            mask,
            mask_sha256,
            fingerprint: sha256_hex(text.as_bytes()),
            acquisitions,
            made: None,
            software: BTreeMap::new(),
        }
    }

    pub fn first_date(&self) -> Option<Date> {
        self.acquisitions.first().map(|a| a.date)
    }

    pub fn last_date(&self) -> Option<Date> {
        self.acquisitions.last().map(|a| a.date)
    }

    /// The key of this tile's products: its fingerprint and the recipe together (16 hex digits).
    /// Products published under this key were made from exactly these inputs, this way.
    pub fn product_key(&self, recipe: &BTreeMap<String, String>) -> String {
        let mut text = format!("{}\n", self.fingerprint);
        for (k, v) in recipe {
            text.push_str(&format!("{k}={v}\n"));
        }
        sha256_hex(text.as_bytes())[..16].to_string()
    }
}

/// A length of time: days or calendar months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Days(u32),
    Months(u32),
}

/// Why a window length could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad window length '{0}': expected a number of days or months such as 365D or 12M")]
pub struct SpanError(pub String);

impl FromStr for Span {
    type Err = SpanError;
    fn from_str(s: &str) -> Result<Span, SpanError> {
        let err = || SpanError(s.to_string());
        let (digits, unit) = s.split_at(s.len().saturating_sub(1));
        let n: u32 = digits.parse().map_err(|_| err())?;
        if n == 0 || n > 1200 {
            return Err(err());
        }
        match unit {
            "D" | "d" => Ok(Span::Days(n)),
            "M" | "m" => Ok(Span::Months(n)),
            _ => Err(err()),
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Span::Days(n) => write!(f, "{n}D"),
            Span::Months(n) => write!(f, "{n}M"),
        }
    }
}

impl Span {
    /// The first day of the window of this length that ends on `end` (inclusive): `365D` ending
    /// 2026-05-31 starts 2025-06-01, as does `12M`.
    pub fn start_for(self, end: Date) -> Date {
        match self {
            Span::Days(n) => end.add_days(1 - n as i32),
            Span::Months(n) => end.sub_months(n).add_days(1),
        }
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which acquisitions a map uses: sensors and a time window, fixed or rolling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub sensors: Vec<String>,
    /// Fixed window: first and last date (inclusive), either open.
    pub start: Option<Date>,
    pub end: Option<Date>,
    /// Rolling window: its length, ending on `as_of`, or (no `as_of`) on the newest selected
    /// acquisition of all the tiles together.
    pub window: Option<Span>,
    pub as_of: Option<Date>,
}

impl Selection {
    /// The window's first and last date (inclusive) given the newest selected acquisition of all
    /// tiles (before any window), or why it cannot be resolved.
    pub fn resolve(&self, newest: Option<Date>) -> (Option<Date>, Option<Date>) {
        match self.window {
            None => (self.start, self.end),
            Some(span) => match self.as_of.or(newest) {
                Some(end) => (Some(span.start_for(end)), Some(end)),
                None => (None, None),
            },
        }
    }
}

/// A whole inventory file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub format: String,
    pub version: u32,
    /// When it was made (UTC, RFC 3339). Not part of any comparison.
    pub created: String,
    /// Versions of the software that made it (treesits, GDAL).
    pub software: BTreeMap<String, String>,
    /// The cube root as given (local path or s3:// URI).
    pub cube: String,
    pub selection: Selection,
    /// The window the selection resolved to.
    pub window_start: Option<Date>,
    pub window_end: Option<Date>,
    /// How the products are made: model SHA-256 and the processing parameters that change them.
    pub recipe: BTreeMap<String, String>,
    /// Sorted by tile id.
    pub tiles: Vec<TileInventory>,
}

/// Why an inventory file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("not a treesits inventory (JSON with format '{INVENTORY_FORMAT}'): {0}")]
    Json(#[from] serde_json::Error),
    #[error("format '{0}' is not '{INVENTORY_FORMAT}'")]
    Format(String),
    #[error("inventory version {0} is newer than this tool reads ({INVENTORY_VERSION}); update treesits")]
    Version(u32),
}

impl Inventory {
    /// Records this run as the maker of every tile's products, except the tiles `reused` keeps from
    /// `previous`: they keep the `made` and `software` of the run that made them.
    pub fn record_makers(&mut self, previous: Option<&Inventory>, reused: &dyn Fn(TileId) -> bool) {
        for t in &mut self.tiles {
            let earlier = previous
                .and_then(|p| p.tile(t.tile_id))
                .filter(|_| reused(t.tile_id));
            match earlier {
                Some(e) => {
                    t.made.clone_from(&e.made);
                    t.software.clone_from(&e.software);
                }
                None => {
                    t.made = Some(self.created.clone());
                    t.software.clone_from(&self.software);
                }
            }
        }
    }

    pub fn from_json(text: &str) -> Result<Inventory, InventoryError> {
        let inv: Inventory = serde_json::from_str(text)?;
        if inv.format != INVENTORY_FORMAT {
            return Err(InventoryError::Format(inv.format));
        }
        if inv.version > INVENTORY_VERSION {
            return Err(InventoryError::Version(inv.version));
        }
        Ok(inv)
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("an inventory serialises");
        s.push('\n');
        s
    }

    pub fn tile(&self, id: TileId) -> Option<&TileInventory> {
        self.tiles
            .binary_search_by(|t| t.tile_id.cmp(&id))
            .ok()
            .map(|i| &self.tiles[i])
    }
}

/// How a tile compares with the previous inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TileStatus {
    /// Same fingerprint and recipe: its products can be reused.
    Unchanged,
    /// Not in the previous inventory.
    New,
    /// Its inputs or the recipe differ.
    Changed,
    /// In the previous inventory, not selected any more: the mosaic changes without it.
    Removed,
}

impl TileStatus {
    pub fn name(self) -> &'static str {
        match self {
            TileStatus::Unchanged => "unchanged",
            TileStatus::New => "new",
            TileStatus::Changed => "changed",
            TileStatus::Removed => "removed",
        }
    }
}

/// One tile's comparison: status and, for a changed tile, what differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileChange {
    pub tile_id: TileId,
    pub status: TileStatus,
    /// Acquisitions (date sensor) new in the window, gone from it, and with a different BOA or QAI.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub replaced: Vec<String>,
    pub mask_changed: bool,
    /// Recipe keys whose values differ.
    pub recipe: Vec<String>,
    /// Same inputs, but the products to reuse are not where they were published.
    pub products_missing: bool,
}

impl TileChange {
    /// A tile without a previous record.
    pub fn new_tile(tile_id: TileId) -> TileChange {
        TileChange {
            tile_id,
            status: TileStatus::New,
            added: Vec::new(),
            removed: Vec::new(),
            replaced: Vec::new(),
            mask_changed: false,
            recipe: Vec::new(),
            products_missing: false,
        }
    }

    /// One line for people (no commas or tabs, so it fits a CSV field and a TSV column).
    pub fn reason(&self) -> String {
        let list = |what: &str, v: &[String]| {
            let shown: Vec<&str> = v.iter().take(5).map(String::as_str).collect();
            let more = if v.len() > 5 {
                format!(" and {} more", v.len() - 5)
            } else {
                String::new()
            };
            format!("{what} {}{more}", shown.join(" + "))
        };
        let mut parts = Vec::new();
        match self.status {
            TileStatus::New => parts.push("not in the previous inventory".to_string()),
            TileStatus::Removed => parts.push("no longer selected".to_string()),
            TileStatus::Unchanged => parts.push("same inputs".to_string()),
            TileStatus::Changed => {}
        }
        if !self.added.is_empty() {
            parts.push(list("added", &self.added));
        }
        if !self.removed.is_empty() {
            parts.push(list("removed", &self.removed));
        }
        if !self.replaced.is_empty() {
            parts.push(list("replaced", &self.replaced));
        }
        if self.mask_changed {
            parts.push("mask changed".into());
        }
        if !self.recipe.is_empty() {
            parts.push(format!("recipe changed: {}", self.recipe.join(" ")));
        }
        if self.products_missing {
            parts.push("no products to reuse".into());
        }
        parts.join("; ")
    }
}

fn acquisition_key(a: &InventoryAcquisition) -> String {
    format!("{} {}", a.date, a.sensor)
}

/// Compares `current` with `previous` tile by tile (every tile of either, sorted by tile id).
pub fn compare(previous: &Inventory, current: &Inventory) -> Vec<TileChange> {
    let recipe: Vec<String> = previous
        .recipe
        .keys()
        .chain(current.recipe.keys())
        .filter(|k| previous.recipe.get(*k) != current.recipe.get(*k))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut ids: Vec<TileId> = previous
        .tiles
        .iter()
        .chain(&current.tiles)
        .map(|t| t.tile_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let mut change = TileChange {
                status: TileStatus::Unchanged,
                ..TileChange::new_tile(id)
            };
            match (previous.tile(id), current.tile(id)) {
                (None, _) => change.status = TileStatus::New,
                (Some(_), None) => change.status = TileStatus::Removed,
                (Some(old), Some(new)) => {
                    let old_acq: BTreeMap<String, &InventoryAcquisition> =
                        old.acquisitions.iter().map(|a| (acquisition_key(a), a)).collect();
                    let new_acq: BTreeMap<String, &InventoryAcquisition> =
                        new.acquisitions.iter().map(|a| (acquisition_key(a), a)).collect();
                    for (k, a) in &new_acq {
                        match old_acq.get(k) {
                            None => change.added.push(k.clone()),
                            Some(o) if o != a => change.replaced.push(k.clone()),
                            Some(_) => {}
                        }
                    }
                    change.removed = old_acq
                        .keys()
                        .filter(|k| !new_acq.contains_key(*k))
                        .cloned()
                        .collect();
                    change.mask_changed = old.mask_sha256 != new.mask_sha256;
                    change.recipe.clone_from(&recipe);
                    if old.fingerprint != new.fingerprint || !recipe.is_empty() {
                        change.status = TileStatus::Changed;
                    }
                }
            }
            change
        })
        .collect()
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex SHA-256 of everything `r` yields, read in blocks (a model or a map file need not
/// fit in memory).
pub fn sha256_reader(mut r: impl std::io::Read) -> std::io::Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The current time as RFC 3339 UTC (`2026-11-21T09:30:00Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let date = Date::from_days_since_epoch(secs.div_euclid(86_400) as i32);
    let s = secs.rem_euclid(86_400);
    format!("{date}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn acq(date: &str, sensor: &str, size: u64) -> InventoryAcquisition {
        let compact = d(date).compact();
        let stamp = |p: &str| FileStamp {
            name: format!("{compact}_LEVEL2_{sensor}_{p}.tif"),
            size,
            mtime: 1_700_000_000,
        };
        InventoryAcquisition {
            date: d(date),
            sensor: sensor.into(),
            boa: stamp("BOA"),
            qai: stamp("QAI"),
        }
    }

    fn inventory(tiles: Vec<TileInventory>) -> Inventory {
        Inventory {
            format: INVENTORY_FORMAT.into(),
            version: INVENTORY_VERSION,
            created: now_rfc3339(),
            software: BTreeMap::new(),
            cube: "cube".into(),
            selection: Selection {
                sensors: vec!["SEN2A".into()],
                start: None,
                end: None,
                window: None,
                as_of: None,
            },
            window_start: None,
            window_end: None,
            recipe: BTreeMap::from([("model_sha256".to_string(), "aa".to_string())]),
            tiles,
        }
    }

    fn tile(id: &str, acqs: Vec<InventoryAcquisition>) -> TileInventory {
        TileInventory::new(id.parse().unwrap(), None, None, acqs)
    }

    #[test]
    fn streamed_sha256_equals_the_one_shot_digest() {
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), abc);
        assert_eq!(sha256_reader(&b"abc"[..]).unwrap(), abc);
        // Longer than one read block.
        let big = vec![7u8; 200_000];
        assert_eq!(sha256_reader(big.as_slice()).unwrap(), sha256_hex(&big));
    }

    #[test]
    fn spans_parse_and_end_on_the_anchor() {
        assert_eq!("12M".parse::<Span>().unwrap(), Span::Months(12));
        assert_eq!("365D".parse::<Span>().unwrap(), Span::Days(365));
        for bad in ["", "M", "0M", "12", "12Y", "-3D", "1.5M"] {
            let e = bad.parse::<Span>().unwrap_err();
            assert!(e.to_string().contains("365D or 12M"), "{bad}: {e}");
        }
        assert_eq!(Span::Months(12).start_for(d("2026-05-31")), d("2025-06-01"));
        assert_eq!(Span::Days(365).start_for(d("2026-05-31")), d("2025-06-01"));
        assert_eq!(Span::Months(1).start_for(d("2024-03-31")), d("2024-03-01"));
        assert_eq!(Span::Days(1).start_for(d("2024-03-31")), d("2024-03-31"));
    }

    #[test]
    fn rolling_windows_end_on_as_of_or_the_newest_acquisition() {
        let mut sel = inventory(vec![]).selection;
        assert_eq!(sel.resolve(Some(d("2026-01-10"))), (None, None));
        sel.start = Some(d("2025-03-01"));
        assert_eq!(sel.resolve(Some(d("2026-01-10"))), (Some(d("2025-03-01")), None));
        sel.start = None;
        sel.window = Some(Span::Days(10));
        assert_eq!(
            sel.resolve(Some(d("2026-01-10"))),
            (Some(d("2026-01-01")), Some(d("2026-01-10")))
        );
        assert_eq!(sel.resolve(None), (None, None));
        sel.as_of = Some(d("2025-12-31"));
        assert_eq!(
            sel.resolve(Some(d("2026-01-10"))),
            (Some(d("2025-12-22")), Some(d("2025-12-31")))
        );
    }

    #[test]
    fn fingerprints_follow_the_files_and_the_mask() {
        let a = tile("X0001_Y0001", vec![acq("2025-06-01", "SEN2A", 10)]);
        let same = tile("X0001_Y0001", vec![acq("2025-06-01", "SEN2A", 10)]);
        assert_eq!(a.fingerprint, same.fingerprint);
        assert_eq!(a.fingerprint.len(), 64);
        let bigger = tile("X0001_Y0001", vec![acq("2025-06-01", "SEN2A", 11)]);
        let other_tile = tile("X0002_Y0001", vec![acq("2025-06-01", "SEN2A", 10)]);
        let masked = TileInventory::new(
            "X0001_Y0001".parse().unwrap(),
            Some("m.tif".into()),
            Some("ff".into()),
            vec![acq("2025-06-01", "SEN2A", 10)],
        );
        for other in [&bigger, &other_tile, &masked] {
            assert_ne!(a.fingerprint, other.fingerprint);
        }
        let r1 = BTreeMap::from([("model_sha256".to_string(), "aa".to_string())]);
        let r2 = BTreeMap::from([("model_sha256".to_string(), "bb".to_string())]);
        assert_eq!(a.product_key(&r1), same.product_key(&r1));
        assert_ne!(a.product_key(&r1), a.product_key(&r2));
        assert_eq!(a.product_key(&r1).len(), 16);
    }

    #[test]
    fn compare_names_added_removed_and_replaced_acquisitions() {
        let prev = inventory(vec![
            tile("X0001_Y0001", vec![acq("2025-06-01", "SEN2A", 10)]),
            tile(
                "X0002_Y0001",
                vec![acq("2025-06-01", "SEN2A", 10), acq("2025-06-11", "SEN2A", 10)],
            ),
            tile("X0003_Y0001", vec![acq("2025-06-01", "SEN2A", 10)]),
            tile("X0004_Y0001", vec![acq("2025-06-01", "SEN2A", 10)]),
        ]);
        let cur = inventory(vec![
            tile("X0001_Y0001", vec![acq("2025-06-01", "SEN2A", 10)]),
            tile(
                "X0002_Y0001",
                vec![acq("2025-06-11", "SEN2A", 12), acq("2025-06-21", "SEN2A", 10)],
            ),
            tile("X0003_Y0001", vec![acq("2025-06-01", "SEN2A", 10)]),
            tile("X0005_Y0001", vec![acq("2025-06-01", "SEN2A", 10)]),
        ]);
        let changes = compare(&prev, &cur);
        let status: Vec<(String, TileStatus)> = changes
            .iter()
            .map(|c| (c.tile_id.to_string(), c.status))
            .collect();
        let want = [
            ("X0001_Y0001", TileStatus::Unchanged),
            ("X0002_Y0001", TileStatus::Changed),
            ("X0003_Y0001", TileStatus::Unchanged),
            ("X0004_Y0001", TileStatus::Removed),
            ("X0005_Y0001", TileStatus::New),
        ]
        .map(|(t, s)| (t.to_string(), s));
        assert_eq!(status, want);
        let c = &changes[1];
        assert_eq!(c.added, ["2025-06-21 SEN2A"]);
        assert_eq!(c.removed, ["2025-06-01 SEN2A"]);
        assert_eq!(c.replaced, ["2025-06-11 SEN2A"]);
        assert_eq!(
            c.reason(),
            "added 2025-06-21 SEN2A; removed 2025-06-01 SEN2A; replaced 2025-06-11 SEN2A"
        );
        assert!(!c.reason().contains(',') && !c.reason().contains('\t'));
        assert_eq!(changes[4].reason(), "not in the previous inventory");
    }

    #[test]
    fn a_different_recipe_changes_every_tile() {
        let prev = inventory(vec![tile("X0001_Y0001", vec![acq("2025-06-01", "SEN2A", 10)])]);
        let mut cur = prev.clone();
        cur.recipe.insert("model_sha256".into(), "bb".into());
        cur.recipe.insert("screen".into(), "cloud".into());
        let [c] = compare(&prev, &cur).try_into().unwrap();
        assert_eq!(c.status, TileStatus::Changed);
        assert_eq!(c.reason(), "recipe changed: model_sha256 screen");
        assert!(compare(&prev, &prev)
            .iter()
            .all(|c| c.status == TileStatus::Unchanged));
    }

    #[test]
    fn json_round_trips_and_other_files_are_refused() {
        let inv = inventory(vec![tile("X0001_Y0001", vec![acq("2025-06-01", "SEN2A", 10)])]);
        let mut inv = inv;
        inv.selection.window = Some(Span::Months(12));
        let back = Inventory::from_json(&inv.to_json()).unwrap();
        assert_eq!(back, inv);
        assert!(inv.to_json().contains("\"window\": \"12M\""));
        let e = Inventory::from_json("{\"tiles\": []}").unwrap_err();
        assert!(e.to_string().starts_with("not a treesits inventory"), "{e}");
        let newer = inv.to_json().replace("\"version\": 1", "\"version\": 9");
        let e = Inventory::from_json(&newer).unwrap_err();
        assert!(e.to_string().contains("update treesits"), "{e}");
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z'));
    }
}
