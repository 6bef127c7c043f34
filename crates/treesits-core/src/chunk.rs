//! Time-series chunks: the Arrow IPC stream `cube-extract` writes and `predict` reads.
//!
//! One record batch holds the pixels of one block-aligned band of tile rows, one row per pixel
//! (row-major), and each pixel's valid observations as lists sharing one set of offsets:
//!
//! | column | type | meaning |
//! | --- | --- | --- |
//! | `row`, `col` | UInt32 | pixel position in the tile |
//! | `n_obs` | UInt32 | number of valid observations (0: keep the pixel, write nodata) |
//! | `date` | List\<Date32\> | acquisition dates, ascending; ties ordered by sensor code |
//! | `sensor` | List\<UInt8\> | [`Sensor::code`] of each observation |
//! | one per band (`BLUE`, …) | List\<Int16\> | BOA reflectance × 10000, as in the cube |
//!
//! The schema metadata ([`ChunkMetadata`]) makes a chunk self-describing. The format is documented
//! for users in `docs/formats.md` ("Time-series chunks"); bump [`FORMAT_VERSION`] on any change.

use std::io::{Read, Write};
use std::sync::Arc;

use arrow_array::types::{Date32Type, Int16Type, UInt32Type, UInt8Type};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, Date32Array, Int16Array, ListArray, PrimitiveArray, RecordBatch,
    UInt32Array, UInt8Array,
};
use arrow_buffer::{ArrowNativeType, Buffer, OffsetBuffer, ScalarBuffer};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_ipc::CompressionType;
/// The schema's key/value metadata (arrow's own map type, cheap to clone).
pub use arrow_schema::Metadata;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

use crate::{Date, PixelWindow, Sensor, TileId};

/// Value of the `treesits.format` metadata key.
pub const FORMAT_NAME: &str = "treesits-timeseries-chunk";
/// Version of the layout below; readers refuse other versions.
pub const FORMAT_VERSION: u32 = 1;

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
}

#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    #[error("not a treesits time-series chunk: {0}")]
    Metadata(String),
    #[error("chunk column '{0}' is missing or has the wrong type")]
    Column(String),
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
    /// Sensors selected, with their codes as used in the `sensor` column.
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
        pairs.into_iter().collect()
    }

    /// Reads the metadata back, refusing other formats and versions.
    pub fn from_map(m: &Metadata) -> Result<ChunkMetadata, ChunkError> {
        let get = |k: &str| {
            m.get(k)
                .map(String::as_str)
                .ok_or_else(|| meta_err(format!("no '{k}' key")))
        };
        if get(keys::FORMAT)? != FORMAT_NAME {
            return Err(meta_err(format!("'{}' is not {FORMAT_NAME}", keys::FORMAT)));
        }
        let version = get(keys::VERSION)?;
        if version != FORMAT_VERSION.to_string() {
            return Err(meta_err(format!(
                "format version {version} is not supported (this build reads version {FORMAT_VERSION})"
            )));
        }
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

    /// The Arrow schema of chunks with this metadata.
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

    /// Builds the record batch for `schema` (from [`ChunkMetadata::schema`]), copying the columns.
    pub fn to_record_batch(&self, schema: SchemaRef) -> Result<RecordBatch, ChunkError> {
        self.clone().into_record_batch(schema)
    }

    /// Builds the record batch for `schema`, moving the columns into it without a copy (a chunk is
    /// the largest allocation of a worker, so a copy would double its memory).
    pub fn into_record_batch(self, schema: SchemaRef) -> Result<RecordBatch, ChunkError> {
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
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// Takes apart a batch built by [`ChunkColumns::into_record_batch`] once it has been written,
    /// returning its vectors emptied but with their capacity, so the next chunk reuses memory that
    /// is already paged in instead of allocating (and page-faulting) afresh. A buffer that is still
    /// shared elsewhere comes back as a new, empty vector.
    pub fn recycle(batch: RecordBatch) -> ChunkColumns {
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
        let (_, columns, _) = batch.into_parts();
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

    /// Reads a record batch of a chunk back into columns.
    pub fn from_record_batch(batch: &RecordBatch) -> Result<ChunkColumns, ChunkError> {
        fn col<'a, T: 'static>(b: &'a RecordBatch, i: usize, name: &str) -> Result<&'a T, ChunkError> {
            b.column(i)
                .as_any()
                .downcast_ref::<T>()
                .ok_or_else(|| ChunkError::Column(name.to_string()))
        }
        let name = |i: usize| batch.schema().field(i).name().clone();
        let row: &UInt32Array = col(batch, 0, "row")?;
        let c: &UInt32Array = col(batch, 1, "col")?;
        let dates: &ListArray = col(batch, 3, "date")?;
        let sensors: &ListArray = col(batch, 4, "sensor")?;
        // Offsets are relative to the values of this batch (sliced arrays start anywhere).
        let base = dates.value_offsets()[0];
        let offsets: Vec<i32> = dates.value_offsets().iter().map(|o| o - base).collect();
        let values = |l: &ListArray| {
            l.values()
                .slice(base as usize, *offsets.last().unwrap_or(&0) as usize)
        };
        let date = values(dates)
            .as_any()
            .downcast_ref::<Date32Array>()
            .ok_or_else(|| ChunkError::Column("date".into()))?
            .values()
            .to_vec();
        let sensor = values(sensors)
            .as_any()
            .downcast_ref::<UInt8Array>()
            .ok_or_else(|| ChunkError::Column("sensor".into()))?
            .values()
            .to_vec();
        let mut bands = Vec::new();
        for i in 5..batch.num_columns() {
            let l: &ListArray = col(batch, i, &name(i))?;
            if l.value_offsets()[0] != base || l.value_offsets().len() != dates.value_offsets().len() {
                return Err(ChunkError::Column(name(i)));
            }
            let v = values(l);
            let v = v
                .as_any()
                .downcast_ref::<Int16Array>()
                .ok_or_else(|| ChunkError::Column(name(i)))?;
            bands.push(v.values().to_vec());
        }
        Ok(ChunkColumns {
            row: row.values().to_vec(),
            col: c.values().to_vec(),
            offsets,
            date,
            sensor,
            bands,
        })
    }
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

    /// Writes the end-of-stream marker and returns the output.
    pub fn finish(mut self) -> Result<W, ChunkError> {
        self.inner.finish()?;
        Ok(self.inner.into_inner()?)
    }
}

/// Reads a whole chunk stream: its metadata and every batch.
pub fn read_chunks(input: impl Read) -> Result<(ChunkMetadata, Vec<ChunkColumns>), ChunkError> {
    let reader = StreamReader::try_new(input, None)?;
    let meta = ChunkMetadata::from_map(reader.schema().metadata())?;
    let mut batches = Vec::new();
    for batch in reader {
        batches.push(ChunkColumns::from_record_batch(&batch?)?);
    }
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
        assert_eq!(ChunkColumns::from_record_batch(&kept).unwrap(), c);
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
}
