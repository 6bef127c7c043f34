//! Time-series chunks: the Arrow IPC stream `cube-extract` writes and `predict` reads.
//!
//! A chunk is one block-aligned band of tile rows. Its record batch holds the pixels, one row per
//! pixel (row-major), and each pixel's valid observations as lists sharing one set of offsets; a
//! chunk too large for the writer's memory budget is several batches (version 3), each the pixels of
//! one column range of the window (row-major within it), in column order, and a range whose batch
//! would exceed the writer's record-batch limit is itself cut into runs of consecutive pixels (so
//! consecutive row ranges of it; [`ChunkWriter::write_within`]). Readers take a chunk file's batches
//! in order and make no other assumption about how its pixels are split among them:
//!
//! | column | type | meaning |
//! | --- | --- | --- |
//! | `row`, `col` | UInt32 | pixel position in the tile |
//! | `n_obs` | UInt32 | number of valid observations (0: keep the pixel, write nodata) |
//! | `date` | List\<Date32\> | acquisition dates, ascending; ties ordered by sensor code |
//! | `sensor` | List\<UInt8\> | [`Sensor::code`] of each observation |
//! | one per band (`BLUE`, …) | List\<Int16\> | BOA reflectance × 10000, as in the cube |
//!
//! | `checksum` | UInt32 | the batch's CRC-32 (every row holds it), see below |
//!
//! The schema metadata ([`ChunkMetadata`]) makes a chunk self-describing. The format is documented
//! for users in `docs/formats.md` ("Time-series chunks"); bump [`FORMAT_VERSION`] on any change.
//!
//! **Integrity** (version 2, both this format and [`crate::prediction`]'s): the writer seals the
//! schema metadata with a CRC-32 of its other keys ([`keys::METADATA_CHECKSUM`]) and gives every
//! batch a last column [`CHECKSUM_COLUMN`] holding the CRC-32 of the batch's metadata, field names
//! and values; the readers ([`ChunkReader`], [`read_chunks`], [`ChunkColumns::from_record_batch`],
//! [`ChunkMetadata::from_map`], the prediction reader) verify both and require Arrow's end-of-stream
//! marker. Version-1 files (no checksums) are still read, without verification.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int16Type, UInt32Type, UInt8Type};
use arrow_array::types::{Int32Type, UInt16Type};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, Date32Array, Int16Array, ListArray, PrimitiveArray, RecordBatch,
    UInt32Array, UInt8Array,
};
use arrow_buffer::{ArrowNativeType, Buffer, OffsetBuffer, ScalarBuffer, ToByteSlice};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_ipc::CompressionType;
/// The schema's key/value metadata (arrow's own map type, cheap to clone).
pub use arrow_schema::Metadata;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

use crate::{Date, PixelWindow, Sensor, TileId};

/// Value of the `treesits.format` metadata key.
pub const FORMAT_NAME: &str = "treesits-timeseries-chunk";
/// Version of the layout below: 2 added the checksums (metadata key and `checksum` column).
/// Readers refuse other versions than this one and [`UNCHECKED_FORMAT_VERSION`].
pub const FORMAT_VERSION: u32 = 3;

/// The checked version before [`FORMAT_VERSION`] 3 (which lets a chunk file hold several record
/// batches, one per column range of its window): still read, with the same checksums.
pub const CHECKED_V2: u32 = 2;
/// The version before the checksums (of both formats): still read, without verification.
pub const UNCHECKED_FORMAT_VERSION: u32 = 1;
/// The last column of every batch (both formats, version 2): the batch's CRC-32 on every row.
pub const CHECKSUM_COLUMN: &str = "checksum";

/// Metadata keys, all prefixed `treesits.`.
pub mod keys {
    pub const FORMAT: &str = "treesits.format";
    pub const VERSION: &str = "treesits.format_version";
    pub const TILE_ID: &str = "treesits.tile_id";
    pub const CRS_WKT: &str = "treesits.crs_wkt";
    pub const GEOTRANSFORM: &str = "treesits.geotransform";
    pub const TILE_SIZE: &str = "treesits.tile_size";
    pub const WINDOW: &str = "treesits.window";
    pub const CHUNK_INDEX: &str = "treesits.chunk_index";
    pub const CHUNK_COUNT: &str = "treesits.chunk_count";
    pub const SENSORS: &str = "treesits.sensors";
    pub const BAND_NAMES: &str = "treesits.band_names";
    pub const SCALE: &str = "treesits.scale";
    pub const NODATA: &str = "treesits.nodata";
    pub const DATE_START: &str = "treesits.date_start";
    pub const DATE_END: &str = "treesits.date_end";
    pub const QAI_SCREEN: &str = "treesits.qai_screen";
    /// CRC-32 of every other key and value (8 lower-case hex digits), both formats, version 2.
    pub const METADATA_CHECKSUM: &str = "treesits.metadata_checksum";
}

#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    #[error("not a treesits time-series chunk: {0}")]
    Metadata(String),
    #[error("chunk column '{0}' is missing or has the wrong type")]
    Column(String),
    /// The schema metadata does not match its checksum.
    #[error("its metadata fails its checksum (stored {stored}, computed {computed:08x}): the file is damaged; re-run {writer} to write it again")]
    DamagedMetadata {
        stored: String,
        computed: u32,
        writer: &'static str,
    },
    /// A batch does not match its checksum; `batch` is its index in the stream where known.
    #[error("{} fails its checksum (stored {stored}, computed {computed:08x}): the file is damaged; re-run {writer} to write it again", batch_label(*.batch))]
    DamagedBatch {
        batch: Option<usize>,
        stored: String,
        computed: u32,
        writer: &'static str,
    },
    /// A message of the stream cannot be decoded (Arrow's error, or what the stream guard saw).
    #[error("a message cannot be decoded ({cause}): the file is damaged; re-run {writer} to write it again")]
    Undecodable { cause: String, writer: &'static str },
    /// The input ended without Arrow's end-of-stream marker.
    #[error("the stream is cut short (no end-of-stream marker): its writer did not finish or the file was truncated; re-run {writer} to write it again")]
    Truncated { writer: &'static str },
}

fn batch_label(batch: Option<usize>) -> String {
    batch.map_or_else(|| "a batch".to_string(), |i| format!("batch {i}"))
}

impl ChunkError {
    /// Names the batch (its index in the stream) in a checksum error.
    pub(crate) fn in_batch(self, i: usize) -> ChunkError {
        match self {
            ChunkError::DamagedBatch {
                batch: None,
                stored,
                computed,
                writer,
            } => ChunkError::DamagedBatch {
                batch: Some(i),
                stored,
                computed,
                writer,
            },
            other => other,
        }
    }
}

/// The tool that writes streams of the format named in `m`, for "re-run …" hints.
pub(crate) fn writer_of(m: &Metadata) -> &'static str {
    match m.get(keys::FORMAT).map(String::as_str) {
        Some(crate::prediction::FORMAT_NAME) => "predict",
        _ => "cube-extract",
    }
}

fn put_bytes(h: &mut crc32fast::Hasher, b: &[u8]) {
    h.update(&(b.len() as u32).to_le_bytes());
    h.update(b);
}

/// Values as little-endian bytes.
fn put_native<T: ArrowNativeType>(h: &mut crc32fast::Hasher, v: &[T]) {
    #[cfg(target_endian = "little")]
    h.update(v.to_byte_slice());
    #[cfg(target_endian = "big")]
    for x in v {
        let mut b = std::slice::from_ref(x).to_byte_slice().to_vec();
        b.reverse();
        h.update(&b);
    }
}

/// CRC-32 of the metadata: every key but [`keys::METADATA_CHECKSUM`] in byte order, each key and
/// value as a u32 little-endian byte length and its UTF-8 bytes.
pub(crate) fn metadata_checksum(m: &Metadata) -> u32 {
    let mut pairs: Vec<(&String, &String)> = m
        .iter()
        .filter(|(k, _)| k.as_str() != keys::METADATA_CHECKSUM)
        .collect();
    pairs.sort();
    let mut h = crc32fast::Hasher::new();
    for (k, v) in pairs {
        put_bytes(&mut h, k.as_bytes());
        put_bytes(&mut h, v.as_bytes());
    }
    h.finalize()
}

/// Adds (or replaces) the metadata checksum key.
pub(crate) fn seal(m: &mut Metadata) {
    let crc = metadata_checksum(m);
    m.insert(keys::METADATA_CHECKSUM, format!("{crc:08x}"));
}

/// Checks the metadata checksum key (version 2 streams of either format).
pub(crate) fn verify_metadata(m: &Metadata) -> Result<(), ChunkError> {
    let computed = metadata_checksum(m);
    let stored = m.get(keys::METADATA_CHECKSUM);
    match stored {
        Some(s) if s.len() == 8 && u32::from_str_radix(s, 16).ok() == Some(computed) => Ok(()),
        _ => Err(ChunkError::DamagedMetadata {
            stored: stored.cloned().unwrap_or_else(|| "none".into()),
            computed,
            writer: writer_of(m),
        }),
    }
}

/// Whether `m` is of the version without checksums (logged once per call at debug level).
pub(crate) fn is_unchecked_version(m: &Metadata) -> bool {
    m.get(keys::VERSION).map(String::as_str) == Some("1")
}

fn hash_array(h: &mut crc32fast::Hasher, a: &dyn Array, name: &str) -> Result<(), ChunkError> {
    let bad = || ChunkError::Column(name.to_string());
    if a.null_count() > 0 {
        return Err(bad());
    }
    match a.data_type() {
        DataType::UInt8 => put_native(h, a.as_primitive::<UInt8Type>().values()),
        DataType::UInt16 => put_native(h, a.as_primitive::<UInt16Type>().values()),
        DataType::UInt32 => put_native(h, a.as_primitive::<UInt32Type>().values()),
        DataType::Int16 => put_native(h, a.as_primitive::<Int16Type>().values()),
        DataType::Int32 => put_native(h, a.as_primitive::<Int32Type>().values()),
        DataType::Date32 => put_native(h, a.as_primitive::<Date32Type>().values()),
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let o = l.value_offsets();
            let base = o[0];
            let end = o[o.len() - 1];
            if base == 0 {
                put_native(h, o);
            } else {
                let rel: Vec<i32> = o.iter().map(|x| x - base).collect();
                put_native(h, &rel);
            }
            let values = l.values().slice(base as usize, (end - base) as usize);
            hash_array(h, values.as_ref(), name)?;
        }
        DataType::FixedSizeList(_, n) => {
            let l = a.as_fixed_size_list();
            let n = *n as usize;
            h.update(&(n as u32).to_le_bytes());
            let values = l.values().slice(l.offset() * n, l.len() * n);
            hash_array(h, values.as_ref(), name)?;
        }
        _ => return Err(bad()),
    }
    Ok(())
}

/// CRC-32 of a batch (both formats): the metadata checksum (u32 LE), the row count (u64 LE), then
/// for each column but the checksum its name (u32 LE length + bytes) and values as little-endian
/// bytes; a list column gives its offsets from 0 (i32) then its values, a fixed-size list its size
/// (u32) then its values.
pub(crate) fn batch_checksum(schema: &Schema, columns: &[ArrayRef], rows: usize) -> Result<u32, ChunkError> {
    let mut h = crc32fast::Hasher::new();
    h.update(&metadata_checksum(schema.metadata()).to_le_bytes());
    h.update(&(rows as u64).to_le_bytes());
    for (field, a) in schema.fields().iter().zip(columns) {
        put_bytes(&mut h, field.name().as_bytes());
        hash_array(&mut h, a.as_ref(), field.name())?;
    }
    Ok(h.finalize())
}

/// Appends the checksum column to the columns of a batch for `schema` (whose last field it is).
pub(crate) fn with_checksum(
    schema: &Schema,
    mut columns: Vec<ArrayRef>,
    rows: usize,
) -> Result<Vec<ArrayRef>, ChunkError> {
    let crc = batch_checksum(schema, &columns, rows)?;
    columns.push(Arc::new(UInt32Array::from(vec![crc; rows])));
    Ok(columns)
}

/// Verifies a batch read back (both formats): its metadata and its checksum column. A version-1
/// batch has none and passes (logged at debug level).
pub(crate) fn verify_batch(batch: &RecordBatch) -> Result<(), ChunkError> {
    let schema = batch.schema();
    let m = schema.metadata();
    if is_unchecked_version(m) {
        log::debug!(
            "{} version 1: no checksums, read without verification",
            m.get(keys::FORMAT).map_or("chunk", String::as_str)
        );
        return Ok(());
    }
    verify_metadata(m)?;
    let missing = || ChunkError::Column(CHECKSUM_COLUMN.to_string());
    let last = batch
        .num_columns()
        .checked_sub(1)
        .filter(|&i| schema.field(i).name() == CHECKSUM_COLUMN)
        .ok_or_else(missing)?;
    let stored = batch
        .column(last)
        .as_any()
        .downcast_ref::<UInt32Array>()
        .filter(|a| a.null_count() == 0)
        .ok_or_else(missing)?;
    let computed = batch_checksum(&schema, &batch.columns()[..last], batch.num_rows())?;
    match stored.values().iter().find(|&&v| v != computed) {
        None => Ok(()),
        Some(bad) => Err(ChunkError::DamagedBatch {
            batch: None,
            stored: format!("{bad:08x}"),
            computed,
            writer: writer_of(m),
        }),
    }
}

/// What a [`StreamGuard`] saw, shared with the reader that owns it.
#[derive(Debug, Default)]
pub(crate) struct GuardState {
    /// The input ran out (Arrow's stream reader takes a plain end of input for the end of the
    /// stream: a stream ended properly only if it stopped at the marker before this happened).
    eof: AtomicBool,
    /// A message's header points outside its body or claims an impossible decompressed size.
    damaged: AtomicBool,
}

/// Passes an Arrow IPC stream through one whole message at a time, so that nothing is handed to
/// Arrow's decoder that would make it panic or try an absurd allocation (a bit flip in a buffer's
/// offset or in the uncompressed length before a zstd buffer): such a message gives an I/O error
/// and marks the stream damaged. Records where the input ran out. Reads nothing after the
/// end-of-stream marker, so streams sent back to back can be read one after another.
pub(crate) struct StreamGuard<R> {
    inner: R,
    state: Arc<GuardState>,
    pending: Vec<u8>,
    served: usize,
    ended: bool,
}

impl<R: Read> StreamGuard<R> {
    pub(crate) fn new(inner: R) -> (StreamGuard<R>, Arc<GuardState>) {
        let state = Arc::new(GuardState::default());
        let guard = StreamGuard {
            inner,
            state: state.clone(),
            pending: Vec::new(),
            served: 0,
            ended: false,
        };
        (guard, state)
    }

    /// Appends up to `n` bytes of the input to `pending`; false (and `eof` set) if it ran out.
    fn take(&mut self, n: u64) -> std::io::Result<bool> {
        let got = (&mut self.inner).take(n).read_to_end(&mut self.pending)?;
        if (got as u64) < n {
            self.state.eof.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }

    /// Loads the next message (or the end-of-stream marker) into `pending`.
    fn load(&mut self) -> std::io::Result<()> {
        self.pending.clear();
        self.served = 0;
        if !self.take(4)? {
            return Ok(());
        }
        // Every message, and the end-of-stream marker, starts with the continuation marker (the
        // form without it predates Arrow 0.15; in a treesits stream it is damage: a length that
        // lost its bits would read as the end of the stream).
        if self.pending[..4] != [0xff; 4] {
            return Err(self.damaged());
        }
        if !self.take(4)? {
            return Ok(());
        }
        let len = i32::from_le_bytes(self.pending[4..8].try_into().expect("4 bytes"));
        if len <= 0 {
            // The end-of-stream marker (0), or a length Arrow refuses itself.
            self.ended = len == 0;
            return Ok(());
        }
        let meta_start = self.pending.len();
        if !self.take(len as u64)? {
            return Ok(());
        }
        let Ok(message) = arrow_ipc::root_as_message(&self.pending[meta_start..]) else {
            return Ok(()); // Arrow reports it
        };
        let body = message.bodyLength();
        let batch = message.header_as_record_batch();
        let limits = batch.map(|b| {
            let compressed = b.compression().is_some();
            let buffers: Vec<(i64, i64)> = b
                .buffers()
                .map(|v| v.iter().map(|x| (x.offset(), x.length())).collect())
                .unwrap_or_default();
            // No buffer of a column decompresses to more than 8 bytes per value of its longest
            // node (offsets: one more), plus padding.
            let most = b
                .nodes()
                .map(|v| v.iter().map(|n| n.length()).max().unwrap_or(0))
                .unwrap_or(0)
                .max(b.length());
            (
                compressed,
                buffers,
                most.saturating_add(1).saturating_mul(8).saturating_add(64),
            )
        });
        let body_start = self.pending.len();
        if body < 0 || !self.take(body as u64)? {
            return Ok(());
        }
        if let Some((compressed, buffers, most)) = limits {
            let body = &self.pending[body_start..];
            for (offset, length) in buffers {
                let inside = offset >= 0
                    && offset % 8 == 0
                    && length >= 0
                    && offset.saturating_add(length) <= body.len() as i64;
                let plausible = !inside || !compressed || length < 8 || {
                    let o = offset as usize;
                    let raw = i64::from_le_bytes(body[o..o + 8].try_into().expect("8 bytes"));
                    raw == -1 || (0..=most).contains(&raw)
                };
                if !inside || !plausible {
                    return Err(self.damaged());
                }
            }
        }
        Ok(())
    }

    fn damaged(&self) -> std::io::Error {
        self.state.damaged.store(true, Ordering::Relaxed);
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a message is damaged (bad framing, or a buffer outside its body or of impossible size)",
        )
    }
}

impl<R: Read> Read for StreamGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.served == self.pending.len() {
            if self.ended || buf.is_empty() {
                return Ok(0); // nothing is read past the end-of-stream marker
            }
            self.load()?;
        }
        let n = buf.len().min(self.pending.len() - self.served);
        buf[..n].copy_from_slice(&self.pending[self.served..self.served + n]);
        self.served += n;
        Ok(n)
    }
}

/// Runs one step of Arrow's stream reader: its decoder panics on some damaged headers (a buffer
/// outside the message body), which is a damaged file like any other, not a bug to crash on.
pub(crate) fn decode<T>(writer: &'static str, step: impl FnOnce() -> T) -> Result<T, ChunkError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).map_err(|_| ChunkError::Undecodable {
        cause: "Arrow's decoder gave up".into(),
        writer,
    })
}

/// An Arrow error while reading a stream of `writer`'s: [`ChunkError::Truncated`] when the input ran
/// out, else [`ChunkError::Undecodable`] (a message its [`StreamGuard`] stopped, or Arrow's error).
pub(crate) fn read_error(e: ArrowError, state: &GuardState, writer: &'static str) -> ChunkError {
    if state.eof.load(Ordering::Relaxed) && !state.damaged.load(Ordering::Relaxed) {
        return ChunkError::Truncated { writer };
    }
    let cause = match e {
        ArrowError::IoError(m, _) => m,
        e => e.to_string(),
    };
    ChunkError::Undecodable { cause, writer }
}

/// Whether the input ran out before the end-of-stream marker.
pub(crate) fn ran_out(state: &GuardState) -> bool {
    state.eof.load(Ordering::Relaxed)
}

/// What a chunk says about itself (stored as schema metadata, strings only).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkMetadata {
    pub tile_id: TileId,
    pub crs_wkt: String,
    /// GDAL geotransform of the whole tile.
    pub geotransform: [f64; 6],
    /// Tile size in pixels (columns, rows).
    pub tile_size: (usize, usize),
    /// The tile rows this stream covers (the chunk, or the whole tile for a stream of all chunks).
    pub window: PixelWindow,
    /// Index of this chunk; `None` for a stream holding every chunk of the tile (one batch each).
    pub chunk_index: Option<usize>,
    pub chunk_count: usize,
    /// Sensors of the acquisitions read (not every sensor requested), with their codes as used in
    /// the `sensor` column ([`Sensor::code`]).
    pub sensors: Vec<Sensor>,
    pub band_names: Vec<String>,
    pub scale: f64,
    pub nodata: i16,
    pub date_start: Date,
    pub date_end: Date,
    /// The QAI screen as given on the command line (`nodata,cloud,…` or `none`).
    pub qai_screen: String,
}

fn meta_err(s: impl Into<String>) -> ChunkError {
    ChunkError::Metadata(s.into())
}

/// Accepts [`FORMAT_VERSION`] and [`CHECKED_V2`] (verifying the metadata checksum) and [`UNCHECKED_FORMAT_VERSION`]
/// (logged); `what` names the format in the refusal ("format", "prediction format").
pub(crate) fn check_version(m: &Metadata, what: &str) -> Result<(), ChunkError> {
    let version = m
        .get(keys::VERSION)
        .ok_or_else(|| meta_err(format!("no '{}' key", keys::VERSION)))?;
    if *version == FORMAT_VERSION.to_string() || *version == CHECKED_V2.to_string() {
        verify_metadata(m)
    } else if *version == UNCHECKED_FORMAT_VERSION.to_string() {
        log::debug!(
            "{} version {UNCHECKED_FORMAT_VERSION}: no checksums, read without verification",
            m.get(keys::FORMAT).map_or("chunk", String::as_str)
        );
        Ok(())
    } else {
        Err(meta_err(format!(
            "{what} version {version} is not supported (this build reads versions {UNCHECKED_FORMAT_VERSION} to {FORMAT_VERSION})"
        )))
    }
}

impl ChunkMetadata {
    /// A small, valid example for tests and documentation: chunk 1 of 10 (rows 300..600) of tile
    /// X0058_Y0056 (3000 × 3000 px of 10 m), SEN2A + SEN2B, bands BLUE and GREEN, 2021, the
    /// nodata + cloud screen. Change what a test needs with struct update syntax
    /// (`ChunkMetadata { band_names: …, ..ChunkMetadata::example() }`).
    pub fn example() -> ChunkMetadata {
        ChunkMetadata {
            tile_id: TileId::new(58, 56),
            crs_wkt: "PROJCS[\"x\"]".into(),
            geotransform: [4_000_000.0, 10.0, 0.0, 3_000_000.5, 0.0, -10.0],
            tile_size: (3000, 3000),
            window: PixelWindow::new(300, 0, 300, 3000),
            chunk_index: Some(1),
            chunk_count: 10,
            sensors: vec![Sensor::Sen2a, Sensor::Sen2b],
            band_names: vec!["BLUE".into(), "GREEN".into()],
            scale: 10_000.0,
            nodata: -9999,
            date_start: "2021-01-01".parse().expect("a valid date"),
            date_end: "2021-12-31".parse().expect("a valid date"),
            qai_screen: "nodata,cloud".into(),
        }
    }

    /// The metadata as schema key/value pairs.
    pub fn to_map(&self) -> Metadata {
        let g = &self.geotransform;
        let w = &self.window;
        let pairs = [
            (keys::FORMAT, FORMAT_NAME.to_string()),
            (keys::VERSION, FORMAT_VERSION.to_string()),
            (keys::TILE_ID, self.tile_id.to_string()),
            (keys::CRS_WKT, self.crs_wkt.clone()),
            (
                keys::GEOTRANSFORM,
                format!("{},{},{},{},{},{}", g[0], g[1], g[2], g[3], g[4], g[5]),
            ),
            (
                keys::TILE_SIZE,
                format!("{},{}", self.tile_size.0, self.tile_size.1),
            ),
            (keys::WINDOW, format!("{},{},{},{}", w.row, w.col, w.rows, w.cols)),
            (
                keys::CHUNK_INDEX,
                self.chunk_index.map_or("all".to_string(), |i| i.to_string()),
            ),
            (keys::CHUNK_COUNT, self.chunk_count.to_string()),
            (
                keys::SENSORS,
                self.sensors
                    .iter()
                    .map(|s| format!("{}={}", s.name(), s.code()))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (keys::BAND_NAMES, self.band_names.join(",")),
            (keys::SCALE, self.scale.to_string()),
            (keys::NODATA, self.nodata.to_string()),
            (keys::DATE_START, self.date_start.to_string()),
            (keys::DATE_END, self.date_end.to_string()),
            (keys::QAI_SCREEN, self.qai_screen.clone()),
        ];
        let mut m: Metadata = pairs.into_iter().collect();
        seal(&mut m);
        m
    }

    /// Reads the metadata back, refusing other formats and versions and (version 2) metadata that
    /// fails its checksum.
    pub fn from_map(m: &Metadata) -> Result<ChunkMetadata, ChunkError> {
        let get = |k: &str| {
            m.get(k)
                .map(String::as_str)
                .ok_or_else(|| meta_err(format!("no '{k}' key")))
        };
        if get(keys::FORMAT)? != FORMAT_NAME {
            return Err(meta_err(format!("'{}' is not {FORMAT_NAME}", keys::FORMAT)));
        }
        check_version(m, "format")?;
        ChunkMetadata::parse(m)
    }

    /// The keys shared by both formats, without the format, version and checksum checks.
    pub(crate) fn parse(m: &Metadata) -> Result<ChunkMetadata, ChunkError> {
        let get = |k: &str| {
            m.get(k)
                .map(String::as_str)
                .ok_or_else(|| meta_err(format!("no '{k}' key")))
        };
        fn nums<T: std::str::FromStr>(k: &str, v: &str, n: usize) -> Result<Vec<T>, ChunkError> {
            let out: Vec<T> = v
                .split(',')
                .map(|p| p.trim().parse::<T>())
                .collect::<Result<_, _>>()
                .map_err(|_| meta_err(format!("bad '{k}' value '{v}'")))?;
            if out.len() != n {
                return Err(meta_err(format!("'{k}' needs {n} numbers, got '{v}'")));
            }
            Ok(out)
        }
        let g: Vec<f64> = nums(keys::GEOTRANSFORM, get(keys::GEOTRANSFORM)?, 6)?;
        let t: Vec<usize> = nums(keys::TILE_SIZE, get(keys::TILE_SIZE)?, 2)?;
        let w: Vec<usize> = nums(keys::WINDOW, get(keys::WINDOW)?, 4)?;
        let parse = |k: &str| -> Result<String, ChunkError> { get(k).map(str::to_string) };
        let date = |k: &str| -> Result<Date, ChunkError> {
            get(k)?
                .parse()
                .map_err(|_| meta_err(format!("bad date in '{k}'")))
        };
        let sensors = get(keys::SENSORS)?
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (name, _) = p.split_once('=').unwrap_or((p, ""));
                name.parse::<Sensor>().map_err(|e| meta_err(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let chunk_index = match get(keys::CHUNK_INDEX)? {
            "all" => None,
            s => Some(
                s.parse()
                    .map_err(|_| meta_err(format!("bad chunk index '{s}'")))?,
            ),
        };
        Ok(ChunkMetadata {
            tile_id: get(keys::TILE_ID)?
                .parse()
                .map_err(|e: crate::grid::TileIdError| meta_err(e.0))?,
            crs_wkt: parse(keys::CRS_WKT)?,
            geotransform: [g[0], g[1], g[2], g[3], g[4], g[5]],
            tile_size: (t[0], t[1]),
            window: PixelWindow {
                row: w[0],
                col: w[1],
                rows: w[2],
                cols: w[3],
            },
            chunk_index,
            chunk_count: get(keys::CHUNK_COUNT)?
                .parse()
                .map_err(|_| meta_err("bad chunk count"))?,
            sensors,
            band_names: get(keys::BAND_NAMES)?.split(',').map(str::to_string).collect(),
            scale: get(keys::SCALE)?.parse().map_err(|_| meta_err("bad scale"))?,
            nodata: get(keys::NODATA)?.parse().map_err(|_| meta_err("bad nodata"))?,
            date_start: date(keys::DATE_START)?,
            date_end: date(keys::DATE_END)?,
            qai_screen: parse(keys::QAI_SCREEN)?,
        })
    }

    /// The Arrow schema of chunks with this metadata (the checksum column last).
    pub fn schema(&self) -> Schema {
        let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, false)));
        let mut fields = vec![
            Field::new("row", DataType::UInt32, false),
            Field::new("col", DataType::UInt32, false),
            Field::new("n_obs", DataType::UInt32, false),
            Field::new("date", list(DataType::Date32), false),
            Field::new("sensor", list(DataType::UInt8), false),
        ];
        fields.extend(
            self.band_names
                .iter()
                .map(|b| Field::new(b.as_str(), list(DataType::Int16), false)),
        );
        fields.push(Field::new(CHECKSUM_COLUMN, DataType::UInt32, false));
        Schema::new(fields).with_metadata(self.to_map())
    }
}

/// The pixels of one chunk, column by column. Observations are stored pixel after pixel:
/// pixel `i` owns `offsets[i]..offsets[i + 1]` of `date`, `sensor` and every band.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkColumns {
    pub row: Vec<u32>,
    pub col: Vec<u32>,
    /// `pixels + 1` offsets, starting at 0.
    pub offsets: Vec<i32>,
    /// Days since 1970-01-01.
    pub date: Vec<i32>,
    pub sensor: Vec<u8>,
    /// One vector per band, each as long as `date`.
    pub bands: Vec<Vec<i16>>,
}

impl ChunkColumns {
    pub fn pixels(&self) -> usize {
        self.row.len()
    }

    pub fn observations(&self) -> usize {
        self.date.len()
    }

    /// The observation range of pixel `i`.
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i] as usize..self.offsets[i + 1] as usize
    }

    /// Bytes these columns hold decoded ([`decoded_bytes`]).
    pub fn bytes(&self) -> usize {
        decoded_bytes(self.pixels(), self.observations(), self.bands.len())
    }

    /// Where to cut these columns into few runs of consecutive pixels (the fewest, or up to a
    /// sixteenth more) that each hold at most `max_bytes` ([`decoded_bytes`]), of about equal size: the runs' pixel ranges, in order (one,
    /// the whole, when it fits; a pixel larger than `max_bytes` is a run of its own).
    pub fn runs(&self, max_bytes: usize) -> Vec<std::ops::Range<usize>> {
        let bands = self.bands.len();
        let total = self.bytes();
        let pixels = self.pixels();
        if total <= max_bytes || pixels <= 1 {
            return std::iter::once(0..pixels).collect();
        }
        let pixel_bytes = |i: usize| decoded_bytes(1, self.range(i).len(), bands);
        // Runs ending where the running total first passes k / n of the whole; the fewest n whose
        // runs all fit (runs of single pixels at worst).
        let cut = |n: usize| {
            let mut runs = Vec::with_capacity(n);
            let (mut start, mut done) = (0, 0usize);
            for i in 0..pixels {
                let b = pixel_bytes(i);
                if i > start && done + b > total * (runs.len() + 1) / n {
                    runs.push(start..i);
                    start = i;
                }
                done += b;
            }
            runs.push(start..pixels);
            runs
        };
        let fits = |r: &std::ops::Range<usize>| {
            r.len() == 1
                || decoded_bytes(
                    r.len(),
                    (self.offsets[r.end] - self.offsets[r.start]) as usize,
                    bands,
                ) <= max_bytes
        };
        let mut n = total.div_ceil(max_bytes.max(1)).min(pixels);
        while n < pixels {
            let runs = cut(n);
            if runs.iter().all(fits) {
                return runs;
            }
            n += (n / 16).max(1); // a few more runs than the fewest, not a search of every n
        }
        (0..pixels).map(|i| i..i + 1).collect()
    }

    /// Builds the record batch for `schema` (from [`ChunkMetadata::schema`]), copying the columns.
    pub fn to_record_batch(&self, schema: SchemaRef) -> Result<RecordBatch, ChunkError> {
        self.clone().into_record_batch(schema)
    }

    /// Builds the record batch for `schema`, moving the columns into it without a copy (a chunk is
    /// the largest allocation of a worker, so a copy would double its memory).
    pub fn into_record_batch(self, schema: SchemaRef) -> Result<RecordBatch, ChunkError> {
        let rows = self.row.len();
        let columns = with_checksum(&schema, self.into_arrays()?, rows)?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// The columns as Arrow arrays (moved, not copied), all but the checksum.
    fn into_arrays(self) -> Result<Vec<ArrayRef>, ChunkError> {
        let n_obs: Vec<u32> = self.offsets.windows(2).map(|w| (w[1] - w[0]) as u32).collect();
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        let list = |t: DataType, values: ArrayRef| -> Result<ArrayRef, ArrowError> {
            let field = Arc::new(Field::new("item", t, false));
            Ok(Arc::new(ListArray::try_new(
                field,
                offsets.clone(),
                values,
                None,
            )?))
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(self.row)),
            Arc::new(UInt32Array::from(self.col)),
            Arc::new(UInt32Array::from(n_obs)),
            list(DataType::Date32, Arc::new(Date32Array::from(self.date)))?,
            list(DataType::UInt8, Arc::new(UInt8Array::from(self.sensor)))?,
        ];
        for b in self.bands {
            columns.push(list(DataType::Int16, Arc::new(Int16Array::from(b)))?);
        }
        Ok(columns)
    }

    /// Takes apart a batch built by [`ChunkColumns::into_record_batch`] once it has been written,
    /// returning its vectors emptied but with their capacity, so the next chunk reuses memory that
    /// is already paged in instead of allocating (and page-faulting) afresh. A buffer that is still
    /// shared elsewhere comes back as a new, empty vector.
    pub fn recycle(batch: RecordBatch) -> ChunkColumns {
        ChunkColumns::recycle_arrays(batch.into_parts().1)
    }

    /// [`ChunkColumns::recycle`] of a batch's columns.
    fn recycle_arrays(columns: Vec<ArrayRef>) -> ChunkColumns {
        fn take<T: ArrowNativeType>(buffer: Buffer) -> Vec<T> {
            buffer.into_vec::<T>().map_or_else(
                |_| Vec::new(),
                |mut v| {
                    v.clear();
                    v
                },
            )
        }
        fn primitive<P: ArrowPrimitiveType>(a: ArrayRef) -> Vec<P::Native> {
            let Some(p) = a.as_any().downcast_ref::<PrimitiveArray<P>>().cloned() else {
                return Vec::new();
            };
            drop(a);
            take(p.into_parts().1.into_inner())
        }
        let mut columns = columns.into_iter();
        let mut next = || columns.next();
        let row = next().map_or_else(Vec::new, primitive::<UInt32Type>);
        let col = next().map_or_else(Vec::new, primitive::<UInt32Type>);
        drop(next()); // n_obs is derived from the offsets
                      // The list columns share one offsets buffer: it is unique once every list is taken apart.
        let mut offsets = Vec::new();
        let mut list = |a: Option<ArrayRef>| -> Option<ArrayRef> {
            let l = a?.as_any().downcast_ref::<ListArray>().cloned()?;
            let (_, o, values, _) = l.into_parts();
            offsets.push(o);
            Some(values)
        };
        let date = list(next()).map_or_else(Vec::new, primitive::<Date32Type>);
        let sensor = list(next()).map_or_else(Vec::new, primitive::<UInt8Type>);
        let mut bands = Vec::new();
        while let Some(values) = list(next()) {
            bands.push(primitive::<Int16Type>(values));
        }
        let last = offsets.pop();
        drop(offsets);
        let offsets = last.map_or_else(Vec::new, |o| take(o.into_inner().into_inner()));
        ChunkColumns {
            row,
            col,
            offsets,
            date,
            sensor,
            bands,
        }
    }

    /// Reads a record batch of a chunk back into columns, verifying its checksums first (version 2;
    /// a version-1 batch has none). Each Arrow column is dropped as soon as it is copied, so a
    /// batch's memory is held about once, not twice, while it is taken apart.
    pub fn from_record_batch(batch: RecordBatch) -> Result<ChunkColumns, ChunkError> {
        verify_batch(&batch)?;
        let schema = batch.schema();
        let bands_end = if is_unchecked_version(schema.metadata()) {
            batch.num_columns()
        } else {
            batch.num_columns() - 1 // the checksum column, checked above
        };
        let name = |i: usize| schema.field(i).name().clone();
        let (_, columns, _) = batch.into_parts();
        let mut columns: Vec<Option<ArrayRef>> = columns.into_iter().map(Some).collect();
        // Takes column `i` out of the batch as a `T`.
        let mut take = |i: usize| columns.get_mut(i).and_then(Option::take);
        fn cast<T: Array + Clone + 'static>(a: Option<ArrayRef>, name: &str) -> Result<T, ChunkError> {
            a.as_ref()
                .and_then(|a| a.as_any().downcast_ref::<T>())
                .cloned()
                .ok_or_else(|| ChunkError::Column(name.to_string()))
        }
        let row = cast::<UInt32Array>(take(0), "row")?.values().to_vec();
        let col = cast::<UInt32Array>(take(1), "col")?.values().to_vec();
        drop(take(2)); // n_obs: the offsets say it
        let dates = cast::<ListArray>(take(3), "date")?;
        // Offsets are relative to the values of this batch (sliced arrays start anywhere).
        let base = dates.value_offsets()[0];
        let list_offsets = dates.value_offsets().len();
        let offsets: Vec<i32> = dates.value_offsets().iter().map(|o| o - base).collect();
        let len = *offsets.last().unwrap_or(&0) as usize;
        let date = cast::<Date32Array>(Some(dates.values().slice(base as usize, len)), "date")?
            .values()
            .to_vec();
        drop(dates);
        let sensors = cast::<ListArray>(take(4), "sensor")?;
        let sensor = cast::<UInt8Array>(Some(sensors.values().slice(base as usize, len)), "sensor")?
            .values()
            .to_vec();
        drop(sensors);
        let mut bands = Vec::with_capacity(bands_end.saturating_sub(5));
        for i in 5..bands_end {
            let l = cast::<ListArray>(take(i), &name(i))?;
            if l.value_offsets()[0] != base || l.value_offsets().len() != list_offsets {
                return Err(ChunkError::Column(name(i)));
            }
            let v = cast::<Int16Array>(Some(l.values().slice(base as usize, len)), &name(i))?;
            drop(l);
            bands.push(v.values().to_vec());
        }
        Ok(ChunkColumns {
            row,
            col,
            offsets,
            date,
            sensor,
            bands,
        })
    }
}

/// Bytes the decoded columns of a record batch of `pixels` pixels, `observations` observations and
/// `bands` bands hold: row, col and offset per pixel (4 bytes each); date (4), sensor (1) and 2 per
/// band per observation. What a reader holds per batch, and what [`ChunkWriter::write_within`] limits.
pub fn decoded_bytes(pixels: usize, observations: usize, bands: usize) -> usize {
    12 * pixels + (5 + 2 * bands) * observations
}

/// zstd level of [`ChunkWriter::new`] and [`crate::prediction::PredictionWriter::new`]: level 1 is
/// about twice as fast as zstd's default 3 on chunks (files about 2 % larger); readers do not care.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// The zstd levels a writer accepts: 1..=22 trade speed for size (higher: smaller, slower); 0 is
/// zstd's default (3); negative levels are faster still and compress less.
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = -131_072..=22;

/// Writes a chunk stream: schema (with metadata) first, then one batch per chunk, zstd-compressed.
pub struct ChunkWriter<W: Write> {
    schema: SchemaRef,
    inner: StreamWriter<W>,
}

/// The Arrow IPC stream writer of every treesits stream (time-series and prediction chunks): the schema
/// first, then batches compressed with zstd at `level` (see [`ZSTD_LEVELS`]).
pub(crate) fn zstd_stream_writer<W: Write>(
    out: W,
    schema: &SchemaRef,
    level: i32,
) -> Result<StreamWriter<W>, ChunkError> {
    if !ZSTD_LEVELS.contains(&level) {
        return Err(ArrowError::InvalidArgumentError(format!(
            "zstd level {level} is outside {}..={}",
            ZSTD_LEVELS.start(),
            ZSTD_LEVELS.end()
        ))
        .into());
    }
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::ZSTD))?
        .try_with_compression_level(Some(level))?;
    Ok(StreamWriter::try_new_with_options(out, schema, options)?)
}

impl<W: Write> ChunkWriter<W> {
    /// A writer compressing at [`DEFAULT_ZSTD_LEVEL`].
    pub fn new(out: W, meta: &ChunkMetadata) -> Result<ChunkWriter<W>, ChunkError> {
        ChunkWriter::with_zstd_level(out, meta, DEFAULT_ZSTD_LEVEL)
    }

    /// A writer compressing at zstd `level` (see [`ZSTD_LEVELS`]).
    pub fn with_zstd_level(out: W, meta: &ChunkMetadata, level: i32) -> Result<ChunkWriter<W>, ChunkError> {
        let schema = Arc::new(meta.schema());
        let inner = zstd_stream_writer(out, &schema, level)?;
        Ok(ChunkWriter { schema, inner })
    }

    pub fn write(&mut self, columns: &ChunkColumns) -> Result<(), ChunkError> {
        let batch = columns.to_record_batch(self.schema.clone())?;
        self.inner.write(&batch)?;
        Ok(())
    }

    /// [`ChunkWriter::write`] without copying the columns first.
    pub fn write_owned(&mut self, columns: ChunkColumns) -> Result<(), ChunkError> {
        let batch = columns.into_record_batch(self.schema.clone())?;
        self.inner.write(&batch)?;
        Ok(())
    }

    /// [`ChunkWriter::write_owned`], then the columns' vectors back, emptied, for the next chunk
    /// ([`ChunkColumns::recycle`]).
    pub fn write_recycling(&mut self, columns: ChunkColumns) -> Result<ChunkColumns, ChunkError> {
        let batch = columns.into_record_batch(self.schema.clone())?;
        self.inner.write(&batch)?;
        Ok(ChunkColumns::recycle(batch))
    }

    /// [`ChunkWriter::write_recycling`] for columns that may hold more than `max_bytes`
    /// ([`ChunkColumns::bytes`]): then they are written as several record batches, the runs of
    /// consecutive pixels of [`ChunkColumns::runs`], so what a reader
    /// holds per batch stays within `max_bytes` however many observations a pixel range has.
    pub fn write_within(
        &mut self,
        columns: ChunkColumns,
        max_bytes: usize,
    ) -> Result<ChunkColumns, ChunkError> {
        let runs = columns.runs(max_bytes);
        if runs.len() <= 1 {
            return self.write_recycling(columns);
        }
        // One set of arrays, sliced (no copy) for every run; the IPC writer writes a slice's own
        // values only.
        let arrays = columns.into_arrays()?;
        for r in runs {
            let sliced: Vec<ArrayRef> = arrays.iter().map(|a| a.slice(r.start, r.len())).collect();
            let sliced = with_checksum(&self.schema, sliced, r.len())?;
            self.inner
                .write(&RecordBatch::try_new(self.schema.clone(), sliced)?)?;
        }
        Ok(ChunkColumns::recycle_arrays(arrays))
    }

    /// Writes the end-of-stream marker and returns the output.
    pub fn finish(mut self) -> Result<W, ChunkError> {
        self.inner.finish()?;
        Ok(self.inner.into_inner()?)
    }
}

/// Reads a chunk stream batch by batch (memory: one batch however long the stream), verifying the
/// metadata and every batch against their checksums (version 2) and requiring the end-of-stream
/// marker: a stream that ends without it gives [`ChunkError::Truncated`] as its last item. Reads
/// through a [`StreamGuard`], so a damaged message is an error, never a panic or an absurd
/// allocation inside Arrow. Reads nothing after the marker.
pub struct ChunkReader<R: Read> {
    meta: ChunkMetadata,
    batches: GuardedBatches<R>,
}

const WRITER: &str = "cube-extract";

/// The record batches of a stream read through [`StreamGuard`]: framing checked before Arrow decodes
/// a message, Arrow's failures turned into [`ChunkError`]s naming `writer`, the end-of-stream marker
/// required, batches counted for messages. Both chunk readers iterate over it.
pub(crate) struct GuardedBatches<R: Read> {
    inner: StreamReader<StreamGuard<R>>,
    state: Arc<GuardState>,
    writer: &'static str,
    batches: usize,
    done: bool,
}

impl<R: Read> GuardedBatches<R> {
    pub(crate) fn open(input: R, writer: &'static str) -> Result<GuardedBatches<R>, ChunkError> {
        let (input, state) = StreamGuard::new(input);
        let inner = decode(writer, || StreamReader::try_new(input, None))?
            .map_err(|e| read_error(e, &state, writer))?;
        Ok(GuardedBatches {
            inner,
            state,
            writer,
            batches: 0,
            done: false,
        })
    }

    /// The stream's schema (its metadata is what the format's `from_map` reads).
    pub(crate) fn schema(&self) -> arrow_schema::SchemaRef {
        self.inner.schema()
    }

    /// The next batch, decoded by `columns` (whose errors get the batch's index); `None` after the
    /// end-of-stream marker or after an error.
    pub(crate) fn next_with<T>(
        &mut self,
        columns: impl FnOnce(RecordBatch) -> Result<T, ChunkError>,
    ) -> Option<Result<T, ChunkError>> {
        if self.done {
            return None;
        }
        let writer = self.writer;
        let item = match decode(writer, || self.inner.next()) {
            Err(e) => Err(e),
            Ok(Some(Ok(batch))) => {
                let i = self.batches;
                self.batches += 1;
                columns(batch).map_err(|e| e.in_batch(i))
            }
            Ok(Some(Err(e))) => Err(read_error(e, &self.state, writer)),
            Ok(None) if ran_out(&self.state) => Err(ChunkError::Truncated { writer }),
            Ok(None) => {
                self.done = true;
                return None;
            }
        };
        self.done = item.is_err();
        Some(item)
    }
}

impl<R: Read> ChunkReader<R> {
    pub fn new(input: R) -> Result<ChunkReader<R>, ChunkError> {
        let batches = GuardedBatches::open(input, WRITER)?;
        let meta = ChunkMetadata::from_map(batches.schema().metadata())?;
        Ok(ChunkReader { meta, batches })
    }

    pub fn metadata(&self) -> &ChunkMetadata {
        &self.meta
    }
}

impl<R: Read> Iterator for ChunkReader<R> {
    type Item = Result<ChunkColumns, ChunkError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.batches.next_with(ChunkColumns::from_record_batch)
    }
}

/// Reads a whole chunk stream: its metadata and every batch, as [`ChunkReader`] does.
pub fn read_chunks(input: impl Read) -> Result<(ChunkMetadata, Vec<ChunkColumns>), ChunkError> {
    let reader = ChunkReader::new(input)?;
    let meta = reader.metadata().clone();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((meta, batches))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ChunkMetadata {
        ChunkMetadata::example()
    }

    #[test]
    fn metadata_round_trips_and_versions_are_checked() {
        let m = meta();
        assert_eq!(ChunkMetadata::from_map(&m.to_map()).unwrap(), m);
        let mut bad = m.to_map();
        bad.insert(keys::VERSION, "99");
        let e = ChunkMetadata::from_map(&bad).unwrap_err().to_string();
        assert!(e.contains("format version 99"), "{e}");
        let mut all = m.clone();
        all.chunk_index = None;
        assert_eq!(all.to_map()[keys::CHUNK_INDEX], "all");
        assert_eq!(ChunkMetadata::from_map(&all.to_map()).unwrap(), all);
    }

    #[test]
    fn columns_round_trip_through_a_zstd_stream() {
        let m = meta();
        let c = ChunkColumns {
            row: vec![300, 300, 301],
            col: vec![0, 1, 7],
            offsets: vec![0, 2, 2, 3],
            date: vec![18_700, 18_710, 18_700],
            sensor: vec![0, 1, 0],
            bands: vec![vec![100, 200, 300], vec![-1, -2, -3]],
        };
        let mut w = ChunkWriter::new(Vec::new(), &m).unwrap();
        w.write(&c).unwrap();
        w.write_owned(c.clone()).unwrap();
        w.write_owned(ChunkColumns {
            offsets: vec![0],
            bands: vec![vec![], vec![]],
            ..Default::default()
        })
        .unwrap();
        let bytes = w.finish().unwrap();
        let (m2, batches) = read_chunks(bytes.as_slice()).unwrap();
        assert_eq!(m2, m);
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0], c);
        assert_eq!(batches[1], c, "moved columns give the same batch as copied ones");
        assert_eq!(batches[0].range(1), 2..2);
        assert_eq!(batches[2].pixels(), 0);
    }

    /// Pixels with 0, 1, … 9 observations, over again, in 3 bands.
    fn uneven_columns(pixels: usize) -> ChunkColumns {
        let mut c = ChunkColumns {
            offsets: vec![0],
            bands: vec![Vec::new(); 3],
            ..Default::default()
        };
        for i in 0..pixels {
            c.row.push((i / 50) as u32);
            c.col.push((i % 50) as u32);
            for k in 0..i % 10 {
                c.date.push(18_000 + k as i32);
                c.sensor.push((k % 2) as u8);
                for (b, band) in c.bands.iter_mut().enumerate() {
                    band.push((i * 10 + k + b) as i16);
                }
            }
            c.offsets.push(c.date.len() as i32);
        }
        c
    }

    #[test]
    fn columns_over_the_limit_are_written_as_runs_of_pixels_within_it() {
        let c = uneven_columns(1000);
        let total = c.bytes();
        assert_eq!(total, 12 * 1000 + 11 * 4500);
        for max in [
            total,
            total / 2 + decoded_bytes(1, 9, 3),
            total / 2,
            total / 7,
            200,
            1,
        ] {
            let runs = c.runs(max);
            // In order, without gaps, the whole; each within the limit (or one pixel); few.
            assert_eq!(runs.first().unwrap().start, 0);
            assert_eq!(runs.last().unwrap().end, 1000);
            assert!(runs.windows(2).all(|r| r[0].end == r[1].start), "{runs:?}");
            for r in &runs {
                let obs = (c.offsets[r.end] - c.offsets[r.start]) as usize;
                let bytes = decoded_bytes(r.len(), obs, 3);
                assert!(bytes <= max || r.len() == 1, "{max}: {r:?} holds {bytes}");
            }
            let largest = decoded_bytes(1, 9, 3);
            if max > 2 * largest {
                assert!(
                    runs.len() <= total.div_ceil(max - largest),
                    "{max}: {} runs",
                    runs.len()
                );
            }
            if max == total / 2 + largest {
                assert_eq!(runs.len(), 2, "two halves");
            }
            let mut w = ChunkWriter::new(
                Vec::new(),
                &ChunkMetadata {
                    band_names: vec!["BLUE".into(), "GREEN".into(), "RED".into()],
                    ..meta()
                },
            )
            .unwrap();
            let spare = w.write_within(c.clone(), max).unwrap();
            assert_eq!(spare.pixels(), 0);
            let (_, batches) = read_chunks(w.finish().unwrap().as_slice()).unwrap();
            assert_eq!(batches.len(), runs.len());
            let mut joined = ChunkColumns {
                offsets: vec![0],
                bands: vec![Vec::new(); 3],
                ..Default::default()
            };
            for b in &batches {
                assert!(b.bytes() <= max || b.pixels() == 1);
                let base = *joined.offsets.last().unwrap();
                joined.row.extend(&b.row);
                joined.col.extend(&b.col);
                joined.offsets.extend(b.offsets[1..].iter().map(|o| o + base));
                joined.date.extend(&b.date);
                joined.sensor.extend(&b.sensor);
                for (j, band) in joined.bands.iter_mut().enumerate() {
                    band.extend(&b.bands[j]);
                }
            }
            assert_eq!(joined, c, "{max}: the runs hold exactly the columns");
        }
    }

    #[test]
    fn written_columns_come_back_empty_with_their_memory() {
        let c = ChunkColumns {
            row: vec![300, 300, 301],
            col: vec![0, 1, 7],
            offsets: vec![0, 2, 2, 3],
            date: vec![18_700, 18_710, 18_700],
            sensor: vec![0, 1, 0],
            bands: vec![vec![100, 200, 300], vec![-1, -2, -3]],
        };
        let given = c.clone();
        let ptr = (
            given.date.as_ptr(),
            given.bands[1].as_ptr(),
            given.offsets.as_ptr(),
        );
        let mut w = ChunkWriter::new(Vec::new(), &meta()).unwrap();
        let back = w.write_recycling(given).unwrap();
        assert_eq!(
            (back.date.as_ptr(), back.bands[1].as_ptr(), back.offsets.as_ptr()),
            ptr
        );
        let caps = |c: &ChunkColumns| {
            let mut v = vec![c.row.capacity(), c.col.capacity(), c.offsets.capacity()];
            v.extend([c.date.capacity(), c.sensor.capacity()]);
            v.extend(c.bands.iter().map(Vec::capacity));
            v
        };
        assert_eq!(caps(&back), vec![3, 3, 4, 3, 3, 3, 3]);
        assert_eq!(back.pixels() + back.observations() + back.offsets.len(), 0);
        assert!(back.bands.iter().all(Vec::is_empty));
        // A batch whose buffers are still shared gives fresh vectors and leaves the batch intact.
        let batch = c.to_record_batch(Arc::new(meta().schema())).unwrap();
        let kept = batch.clone();
        let fresh = ChunkColumns::recycle(batch);
        assert_eq!(fresh.date.capacity(), 0);
        assert_eq!(ChunkColumns::from_record_batch(kept.clone()).unwrap(), c);
        let bytes = w.finish().unwrap();
        assert_eq!(read_chunks(bytes.as_slice()).unwrap().1, vec![c]);
    }

    #[test]
    fn zstd_level_changes_the_size_not_the_content() {
        let m = meta();
        let n = 20_000usize;
        // Smooth, noisy-ish reflectances: compressible, but not trivially.
        let band = |seed: u32| -> Vec<i16> {
            (0..n as u32)
                .map(|i| (500 + (i * 7 + seed) % 97 + (i.wrapping_mul(2_654_435_761) >> 28)) as i16)
                .collect()
        };
        let c = ChunkColumns {
            row: vec![300; n],
            col: (0..n as u32).collect(),
            offsets: (0..=n as i32).collect(),
            date: (0..n as i32).map(|i| 18_000 + i % 50).collect(),
            sensor: (0..n).map(|i| (i % 2) as u8).collect(),
            bands: vec![band(1), band(2)],
        };
        let write = |level: i32| {
            let mut w = ChunkWriter::with_zstd_level(Vec::new(), &m, level).unwrap();
            w.write(&c).unwrap();
            w.finish().unwrap()
        };
        let (fast, small) = (write(1), write(19));
        assert!(small.len() < fast.len(), "{} vs {}", small.len(), fast.len());
        for bytes in [&fast, &small, &write(-5)] {
            let (m2, batches) = read_chunks(bytes.as_slice()).unwrap();
            assert_eq!(m2, m);
            assert_eq!(batches, vec![c.clone()]);
        }
        for bad in [23, -131_073] {
            let e = ChunkWriter::with_zstd_level(Vec::new(), &m, bad)
                .err()
                .expect("refused")
                .to_string();
            assert!(
                e.contains(&format!("zstd level {bad} is outside -131072..=22")),
                "{e}"
            );
        }
    }

    /// `n` pixels with 0..=12 observations each and two bands, one smooth (zstd compresses it) and
    /// one noisy (stored raw): both kinds of buffer occur in the stream.
    fn sample_columns(n: usize) -> ChunkColumns {
        let mut c = ChunkColumns {
            offsets: vec![0],
            bands: vec![Vec::new(), Vec::new()],
            ..Default::default()
        };
        let mut x = 0x9e37_79b9u32;
        for i in 0..n {
            c.row.push(300 + (i / 50) as u32);
            c.col.push((i % 50) as u32);
            for j in 0..(i * 7) % 13 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                c.date.push(18_700 + 5 * j as i32);
                c.sensor.push((j % 2) as u8);
                c.bands[0].push(400 + (j as i16) * 3);
                c.bands[1].push((x % 6000) as i16 - 100);
            }
            c.offsets.push(c.date.len() as i32);
        }
        c
    }

    /// Flips one bit of every byte in turn (bit `p % 8` of byte `p`) and reads the result back:
    /// each flip must be refused or give exactly what was written. Returns the refusals' messages.
    fn flip_every_byte<T: PartialEq + std::fmt::Debug>(
        bytes: &[u8],
        expected: &T,
        read: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Vec<String> {
        assert_eq!(&read(bytes).expect("the intact stream reads"), expected);
        let (mut refused, mut silent) = (Vec::new(), Vec::new());
        for p in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[p] ^= 1 << (p % 8);
            match read(&b) {
                Err(e) => refused.push(e),
                Ok(got) if &got == expected => {} // padding, unused flatbuffer bytes
                Ok(_) => silent.push(p),
            }
        }
        assert!(
            silent.is_empty(),
            "{} of {} flipped bytes read without an error but with other content, at {silent:?}",
            silent.len(),
            bytes.len()
        );
        refused
    }

    fn read_all(b: &[u8]) -> Result<(ChunkMetadata, Vec<ChunkColumns>), String> {
        read_chunks(b).map_err(|e| e.to_string())
    }

    #[test]
    fn every_bit_flip_in_a_chunk_is_refused_or_harmless() {
        let m = meta();
        let columns = [sample_columns(120), sample_columns(7)];
        let mut w = ChunkWriter::new(Vec::new(), &m).unwrap();
        for c in &columns {
            w.write(c).unwrap();
        }
        let bytes = w.finish().unwrap();
        let expected = (m, columns.to_vec());
        let refused = flip_every_byte(&bytes, &expected, read_all);
        // The header, the batches' values and the end-of-stream marker are all guarded; what reads
        // back unchanged is padding and flatbuffer bytes nobody reads.
        assert!(
            refused.len() * 4 > bytes.len() * 3,
            "{} of {}",
            refused.len(),
            bytes.len()
        );
        let has = |s: &str| refused.iter().any(|e| e.contains(s));
        for s in [
            "its metadata fails its checksum",
            "batch 0 fails its checksum",
            "batch 1 fails its checksum",
            "the file is damaged; re-run cube-extract to write it again",
            "cut short (no end-of-stream marker)",
        ] {
            assert!(has(s), "no refusal says '{s}'");
        }
    }

    #[test]
    fn a_chunk_cut_anywhere_is_refused_as_cut_short() {
        let m = meta();
        let mut w = ChunkWriter::new(Vec::new(), &m).unwrap();
        w.write(&sample_columns(60)).unwrap();
        w.write(&sample_columns(3)).unwrap();
        let bytes = w.finish().unwrap();
        for len in 0..bytes.len() {
            let e = read_all(&bytes[..len]).expect_err("a cut stream is refused");
            assert!(
                e.starts_with("the stream is cut short (no end-of-stream marker)")
                    && e.ends_with("re-run cube-extract to write it again"),
                "cut at {len} of {}: {e}",
                bytes.len()
            );
        }
        // Without only the 8-byte marker: every batch is there, the end is not.
        let e = read_all(&bytes[..bytes.len() - 8]).unwrap_err();
        assert!(e.contains("cut short (no end-of-stream marker)"), "{e}");
        assert_eq!(read_all(&bytes).unwrap().1.len(), 2);
    }

    #[test]
    fn the_chunk_reader_gives_batches_one_by_one_then_the_cut() {
        let m = meta();
        let mut w = ChunkWriter::new(Vec::new(), &m).unwrap();
        w.write(&sample_columns(4)).unwrap();
        w.write(&sample_columns(9)).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = ChunkReader::new(&bytes[..bytes.len() - 8]).unwrap();
        assert_eq!(r.metadata(), &m);
        assert_eq!(r.next().unwrap().unwrap(), sample_columns(4));
        assert_eq!(r.next().unwrap().unwrap(), sample_columns(9));
        let e = r.next().unwrap().unwrap_err().to_string();
        assert!(
            e.starts_with("the stream is cut short (no end-of-stream marker)"),
            "{e}"
        );
        assert!(r.next().is_none());
        let mut input = bytes.as_slice();
        assert_eq!(ChunkReader::new(&mut input).unwrap().count(), 2);
        assert!(input.is_empty(), "the reader stops at the marker");
    }

    #[test]
    fn version_1_chunks_are_still_read_without_checksums() {
        let m = meta();
        let c = sample_columns(30);
        // A version-1 stream: no checksum column, no metadata checksum.
        let mut map = m.to_map();
        map.insert(keys::VERSION, "1");
        map.remove(keys::METADATA_CHECKSUM);
        let v2 = m.schema();
        let fields: Vec<Field> = v2.fields()[..v2.fields().len() - 1]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let schema = Arc::new(Schema::new(fields).with_metadata(map));
        let batch = c.to_record_batch(Arc::new(m.schema())).unwrap();
        let n = batch.num_columns();
        let batch = RecordBatch::try_new(schema.clone(), batch.columns()[..n - 1].to_vec()).unwrap();
        let mut w = StreamWriter::try_new(Vec::new(), &schema).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        let bytes = w.into_inner().unwrap();
        let (m1, batches) = read_all(&bytes).unwrap();
        assert_eq!((m1, batches), (m.clone(), vec![c]));
        // Version 2 (checksums, one batch per file) is read and verified as 3 is.
        let mut v2 = m.to_map();
        v2.insert(keys::VERSION, "2");
        seal(&mut v2);
        assert_eq!(ChunkMetadata::from_map(&v2).unwrap(), m);
        v2.insert(keys::TILE_ID, "X0001_Y0001");
        assert!(
            ChunkMetadata::from_map(&v2).is_err(),
            "a damaged v2 header is still refused"
        );
        // Other versions are refused.
        let mut v4 = m.to_map();
        v4.insert(keys::VERSION, "4");
        let e = ChunkMetadata::from_map(&v4).unwrap_err().to_string();
        assert!(
            e.ends_with("format version 4 is not supported (this build reads versions 1 to 3)"),
            "{e}"
        );
    }

    #[test]
    fn written_metadata_and_batches_carry_their_checksums() {
        let m = meta();
        let map = m.to_map();
        assert_eq!(map[keys::VERSION], "3");
        let crc = &map[keys::METADATA_CHECKSUM];
        assert_eq!(crc.len(), 8);
        let mut changed = map.clone();
        changed.insert(keys::CRS_WKT, "PROJCS[\"y\"]");
        let e = ChunkMetadata::from_map(&changed).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "its metadata fails its checksum (stored {crc}, computed {:08x}): the file is damaged; re-run cube-extract to write it again",
                metadata_checksum(&changed)
            )
        );
        let c = sample_columns(10);
        let batch = c.to_record_batch(Arc::new(m.schema())).unwrap();
        let sums = batch
            .column_by_name(CHECKSUM_COLUMN)
            .unwrap()
            .as_primitive::<UInt32Type>();
        assert_eq!(sums.len(), 10);
        assert!(sums.values().iter().all(|&v| v == sums.value(0)));
        // A value changed after the checksum was taken is refused.
        let mut columns = batch.columns().to_vec();
        let mut col = c.col.clone();
        col[3] += 1;
        columns[1] = Arc::new(UInt32Array::from(col));
        let damaged = RecordBatch::try_new(batch.schema(), columns).unwrap();
        let e = ChunkColumns::from_record_batch(damaged.clone())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "a batch fails its checksum (stored {:08x}, computed ",
                sums.value(0)
            )),
            "{e}"
        );
        assert_eq!(ChunkColumns::from_record_batch(batch.clone()).unwrap(), c);
    }
}
