//! The training table: one Parquet file (zstd), one row per sample pixel, written through a hidden
//! temporary file beside the target and renamed into place only when complete.
//!
//! Columns and file metadata are the contract with training (docs/formats.md, "Training table").

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Date32Array, Float64Array, Int16Array, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, UInt32Array, UInt8Array,
};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use treesits_core::atomic::AtomicPath;

/// `treesits.format` of a training table.
pub const FORMAT_NAME: &str = "treesits-training-table";
/// `treesits.format_version` of the tables this build writes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("cannot build a batch of {path}: {source}")]
    Arrow {
        path: PathBuf,
        source: arrow_schema::ArrowError,
    },
}

/// Which optional columns the table has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptionalColumns {
    pub plot_id: bool,
    pub weight: bool,
    pub year: bool,
}

/// The Arrow schema of a table with these bands and optional columns, `metadata` as file metadata.
pub fn schema(bands: &[String], opt: OptionalColumns, metadata: HashMap<String, String>) -> Schema {
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, false)));
    let mut f = vec![Field::new("sample_id", DataType::Int64, false)];
    if opt.plot_id {
        f.push(Field::new("plot_id", DataType::Utf8, true));
    }
    f.push(Field::new("label", DataType::Int32, false));
    f.push(Field::new("label_name", DataType::Utf8, false));
    if opt.weight {
        f.push(Field::new("weight", DataType::Float64, true));
    }
    if opt.year {
        f.push(Field::new("year", DataType::Int32, true));
    }
    f.extend([
        Field::new("tile_id", DataType::Utf8, false),
        Field::new("row", DataType::UInt32, false),
        Field::new("col", DataType::UInt32, false),
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
        Field::new("n_obs", DataType::UInt32, false),
        Field::new("date", list(DataType::Date32), false),
        Field::new("sensor", list(DataType::UInt8), false),
    ]);
    f.extend(
        bands
            .iter()
            .map(|b| Field::new(b.as_str(), list(DataType::Int16), false)),
    );
    Schema::new(f).with_metadata(metadata)
}

/// Rows waiting to be written, column by column (observations pixel after pixel, as in chunks).
#[derive(Debug, Default)]
pub struct Rows {
    pub sample_id: Vec<i64>,
    pub plot_id: Vec<Option<String>>,
    pub label: Vec<i32>,
    pub label_name: Vec<String>,
    pub weight: Vec<Option<f64>>,
    pub year: Vec<Option<i32>>,
    pub tile_id: Vec<String>,
    pub row: Vec<u32>,
    pub col: Vec<u32>,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    /// `rows + 1` offsets, starting at 0.
    pub offsets: Vec<i32>,
    pub date: Vec<i32>,
    pub sensor: Vec<u8>,
    pub bands: Vec<Vec<i16>>,
}

impl Rows {
    pub fn new(bands: usize) -> Rows {
        Rows {
            offsets: vec![0],
            bands: vec![Vec::new(); bands],
            ..Rows::default()
        }
    }

    pub fn len(&self) -> usize {
        self.sample_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sample_id.is_empty()
    }

    fn into_batch(
        self,
        schema: &SchemaRef,
        opt: OptionalColumns,
    ) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let n_obs: Vec<u32> = self.offsets.windows(2).map(|w| (w[1] - w[0]) as u32).collect();
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        let list = |t: DataType, values: ArrayRef| -> Result<ArrayRef, arrow_schema::ArrowError> {
            let field = Arc::new(Field::new("item", t, false));
            Ok(Arc::new(ListArray::try_new(
                field,
                offsets.clone(),
                values,
                None,
            )?))
        };
        let mut c: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(self.sample_id))];
        if opt.plot_id {
            c.push(Arc::new(StringArray::from(self.plot_id)));
        }
        c.push(Arc::new(Int32Array::from(self.label)));
        c.push(Arc::new(StringArray::from(self.label_name)));
        if opt.weight {
            c.push(Arc::new(Float64Array::from(self.weight)));
        }
        if opt.year {
            c.push(Arc::new(Int32Array::from(self.year)));
        }
        c.push(Arc::new(StringArray::from(self.tile_id)));
        c.push(Arc::new(UInt32Array::from(self.row)));
        c.push(Arc::new(UInt32Array::from(self.col)));
        c.push(Arc::new(Float64Array::from(self.x)));
        c.push(Arc::new(Float64Array::from(self.y)));
        c.push(Arc::new(UInt32Array::from(n_obs)));
        c.push(list(DataType::Date32, Arc::new(Date32Array::from(self.date)))?);
        c.push(list(DataType::UInt8, Arc::new(UInt8Array::from(self.sensor)))?);
        for b in self.bands {
            c.push(list(DataType::Int16, Arc::new(Int16Array::from(b)))?);
        }
        RecordBatch::try_new(schema.clone(), c)
    }
}

/// A table being written; [`TableWriter::finish`] renames it into place.
pub struct TableWriter {
    out: AtomicPath,
    schema: SchemaRef,
    opt: OptionalColumns,
    writer: ArrowWriter<File>,
    rows: usize,
}

impl TableWriter {
    /// Starts `path` (a hidden temporary file beside it until [`TableWriter::finish`]).
    pub fn create(path: &Path, schema: Schema, opt: OptionalColumns) -> Result<TableWriter, TableError> {
        let out = AtomicPath::new(path);
        let file = File::create(out.temp()).map_err(|source| TableError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let schema = Arc::new(schema);
        // The file's key-value metadata (what pyarrow shows as schema.metadata, R arrow as
        // $metadata), beside the Arrow schema the writer stores.
        let mut kv: Vec<KeyValue> = schema
            .metadata()
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        kv.sort_by(|a, b| a.key.cmp(&b.key));
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(kv))
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("a valid zstd level"),
            ))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|source| {
            TableError::Parquet {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Ok(TableWriter {
            out,
            schema,
            opt,
            writer,
            rows: 0,
        })
    }

    pub fn write(&mut self, rows: Rows) -> Result<(), TableError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.rows += rows.len();
        let path = self.out.target().to_path_buf();
        let batch = rows
            .into_batch(&self.schema, self.opt)
            .map_err(|source| TableError::Arrow {
                path: path.clone(),
                source,
            })?;
        self.writer
            .write(&batch)
            .map_err(|source| TableError::Parquet { path, source })
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Closes the file and moves it into place (replacing an existing one).
    pub fn finish(self) -> Result<PathBuf, TableError> {
        let path = self.out.target().to_path_buf();
        let file = self.writer.into_inner().map_err(|source| TableError::Parquet {
            path: path.clone(),
            source,
        })?;
        file.sync_all().map_err(|source| TableError::Io {
            path: path.clone(),
            source,
        })?;
        drop(file);
        self.out
            .commit()
            .map_err(|source| TableError::Io { path, source })
    }
}
