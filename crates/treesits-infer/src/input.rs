//! Where time-series chunks come from: a chunk file, every `*.arrows` file of a directory (sorted by
//! name, prediction chunks skipped), or one stream on stdin; read batch by batch, so memory is one
//! chunk however long the stream.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow_ipc::reader::StreamReader;
use treesits_core::chunk::{ChunkColumns, ChunkMetadata};

use crate::InferError;

/// File name ending of time-series chunks.
pub const CHUNK_SUFFIX: &str = ".arrows";
/// Largest schema message accepted at the start of a stream (a chunk's is a few KiB).
const SCHEMA_MESSAGE_MAX: i32 = 16 << 20;
/// File name ending of prediction chunks.
pub const PREDICTION_SUFFIX: &str = ".pred.arrows";

/// One input stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkSource {
    File(PathBuf),
    Stdin,
}

impl ChunkSource {
    /// How the source is named in messages.
    pub fn label(&self) -> String {
        match self {
            ChunkSource::File(p) => p.display().to_string(),
            ChunkSource::Stdin => "stdin".to_string(),
        }
    }

    /// The prediction file name for this source: `a_chunk0001.arrows` → `a_chunk0001.pred.arrows`;
    /// stdin → `<tile_id>.pred.arrows`.
    pub fn output_name(&self, meta: &ChunkMetadata) -> String {
        match self {
            ChunkSource::File(p) => {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let stem = name.strip_suffix(CHUNK_SUFFIX).unwrap_or(&name);
                format!("{stem}{PREDICTION_SUFFIX}")
            }
            ChunkSource::Stdin => format!("{}{PREDICTION_SUFFIX}", meta.tile_id),
        }
    }

    /// Opens the stream and reads its metadata.
    pub fn open(&self) -> Result<ChunkStream, InferError> {
        let reader: Box<dyn Read + Send> = match self {
            ChunkSource::File(p) => {
                Box::new(File::open(p).map_err(|e| InferError::Input(format!("{}: {e}", p.display())))?)
            }
            ChunkSource::Stdin => Box::new(std::io::stdin()),
        };
        ChunkStream::new(reader, self.label())
    }
}

/// Expands `--input`: `-` (stdin), a chunk file, or a directory of chunk files.
pub fn sources(input: &str) -> Result<Vec<ChunkSource>, InferError> {
    if input == "-" {
        return Ok(vec![ChunkSource::Stdin]);
    }
    let path = Path::new(input);
    if path.is_file() {
        return Ok(vec![ChunkSource::File(path.to_path_buf())]);
    }
    if !path.is_dir() {
        return Err(InferError::Input(format!(
            "--input {input}: no such file or directory (give a chunk file, a directory of them, or - for stdin)"
        )));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| InferError::Input(format!("--input {input}: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.is_file()
                && name.ends_with(CHUNK_SUFFIX)
                && !name.ends_with(PREDICTION_SUFFIX)
                && !name.starts_with('.')
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(InferError::Input(format!(
            "--input {input}: the directory holds no *{CHUNK_SUFFIX} chunk files (cube-extract --out-dir writes them)"
        )));
    }
    Ok(files.into_iter().map(ChunkSource::File).collect())
}

/// Records whether the underlying reader ran into its end: a stream that ends without Arrow's
/// end-of-stream marker was cut short (a killed writer, a truncated copy).
struct EofWatch<R> {
    inner: R,
    eof: Arc<AtomicBool>,
}

impl<R: Read> Read for EofWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof.store(true, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// An open chunk stream: its metadata, then its batches one by one.
pub struct ChunkStream {
    label: String,
    meta: ChunkMetadata,
    reader: StreamReader<BufReader<EofWatch<Box<dyn Read + Send>>>>,
    eof: Arc<AtomicBool>,
}

impl ChunkStream {
    pub fn new(mut reader: Box<dyn Read + Send>, label: String) -> Result<ChunkStream, InferError> {
        let damaged = |e: &dyn std::fmt::Display| {
            InferError::Input(format!(
                "{label}: not a readable Arrow IPC stream ({e}): the file is damaged or truncated; extract it again with cube-extract"
            ))
        };
        // Look at the first message's header before Arrow does: a garbage length would have it
        // allocate up to 2 GiB before failing. A stream starts with the continuation marker and the
        // length of its (small) schema message.
        let mut header = [0u8; 8];
        reader.read_exact(&mut header).map_err(|e| damaged(&e))?;
        let len = i32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if header[..4] != [0xff; 4] || !(1..=SCHEMA_MESSAGE_MAX).contains(&len) {
            return Err(damaged(&"no stream header"));
        }
        let eof = Arc::new(AtomicBool::new(false));
        let watched = EofWatch {
            inner: Box::new(std::io::Cursor::new(header).chain(reader)) as Box<dyn Read + Send>,
            eof: eof.clone(),
        };
        let reader = StreamReader::try_new(BufReader::new(watched), None).map_err(|e| damaged(&e))?;
        let meta = ChunkMetadata::from_map(reader.schema().metadata())
            .map_err(|e| InferError::Input(format!("{label}: {e}")))?;
        Ok(ChunkStream {
            label,
            meta,
            reader,
            eof,
        })
    }

    pub fn metadata(&self) -> &ChunkMetadata {
        &self.meta
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The next chunk, `None` at the end-of-stream marker; a stream cut short is an error.
    pub fn next_chunk(&mut self) -> Result<Option<ChunkColumns>, InferError> {
        let label = &self.label;
        match self.reader.next() {
            Some(Ok(batch)) => {
                let columns = ChunkColumns::from_record_batch(&batch)
                    .map_err(|e| InferError::Input(format!("{label}: {e}")))?;
                if columns.bands.len() != self.meta.band_names.len() {
                    return Err(InferError::Input(format!(
                        "{label}: a batch has {} band columns but the metadata lists {}",
                        columns.bands.len(),
                        self.meta.band_names.len()
                    )));
                }
                Ok(Some(columns))
            }
            Some(Err(e)) => Err(InferError::Input(format!(
                "{label}: reading a chunk failed ({e}): the file is damaged or truncated; extract it again with cube-extract"
            ))),
            None if self.eof.load(Ordering::Relaxed) => Err(InferError::Input(format!(
                "{label}: the stream ends without its end-of-stream marker: the writer did not finish (a failed cube-extract or a truncated file); extract it again"
            ))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use treesits_core::chunk::ChunkWriter;
    use treesits_core::{Date, PixelWindow, Sensor, TileId};

    fn meta() -> ChunkMetadata {
        ChunkMetadata {
            tile_id: TileId::new(3, 4),
            crs_wkt: String::new(),
            geotransform: [0.0, 10.0, 0.0, 0.0, 0.0, -10.0],
            tile_size: (10, 10),
            window: PixelWindow {
                row: 0,
                col: 0,
                rows: 1,
                cols: 10,
            },
            chunk_index: Some(0),
            chunk_count: 10,
            sensors: vec![Sensor::Sen2a],
            band_names: vec!["BLUE".into()],
            scale: 10_000.0,
            nodata: -9999,
            date_start: Date::new(2021, 1, 1).unwrap(),
            date_end: Date::new(2021, 12, 31).unwrap(),
            qai_screen: "none".into(),
        }
    }

    fn stream(batches: usize) -> Vec<u8> {
        let mut w = ChunkWriter::new(Vec::new(), &meta()).unwrap();
        for i in 0..batches {
            w.write(&ChunkColumns {
                row: vec![i as u32],
                col: vec![1],
                offsets: vec![0, 1],
                date: vec![18_700],
                sensor: vec![0],
                bands: vec![vec![42]],
            })
            .unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn batches_are_read_one_by_one_and_truncation_is_detected() {
        let bytes = stream(2);
        let mut s = ChunkStream::new(Box::new(std::io::Cursor::new(bytes.clone())), "a".into()).unwrap();
        assert_eq!(s.metadata(), &meta());
        assert_eq!(s.next_chunk().unwrap().unwrap().row, vec![0]);
        assert_eq!(s.next_chunk().unwrap().unwrap().row, vec![1]);
        assert!(s.next_chunk().unwrap().is_none());

        // Without the 8-byte end-of-stream marker: cut at a batch boundary.
        let cut = bytes[..bytes.len() - 8].to_vec();
        let mut s = ChunkStream::new(Box::new(std::io::Cursor::new(cut)), "b".into()).unwrap();
        s.next_chunk().unwrap();
        s.next_chunk().unwrap();
        let e = s.next_chunk().unwrap_err().to_string();
        assert!(
            e.contains("b: the stream ends without its end-of-stream marker"),
            "{e}"
        );

        // Cut inside a batch.
        let cut = bytes[..bytes.len() - 40].to_vec();
        let mut s = ChunkStream::new(Box::new(std::io::Cursor::new(cut)), "c".into()).unwrap();
        s.next_chunk().unwrap();
        let e = s.next_chunk().unwrap_err().to_string();
        assert!(e.contains("c: reading a chunk failed"), "{e}");

        for garbage in [&b"garbage!"[..], b"ab", &bytes[..12]] {
            let e = ChunkStream::new(Box::new(std::io::Cursor::new(garbage.to_vec())), "d".into())
                .err()
                .unwrap()
                .to_string();
            assert!(e.starts_with("d: not a readable Arrow IPC stream"), "{e}");
        }
    }

    #[test]
    fn directories_list_chunks_sorted_without_predictions() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "b_chunk0001.arrows",
            "a_chunk0000.arrows",
            "a_chunk0000.pred.arrows",
            "notes.txt",
            ".x.arrows",
        ] {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        let s = sources(dir.path().to_str().unwrap()).unwrap();
        let names: Vec<String> = s
            .iter()
            .map(|s| match s {
                ChunkSource::File(p) => p.file_name().unwrap().to_string_lossy().into_owned(),
                ChunkSource::Stdin => unreachable!(),
            })
            .collect();
        assert_eq!(names, ["a_chunk0000.arrows", "b_chunk0001.arrows"]);
        assert_eq!(s[0].output_name(&meta()), "a_chunk0000.pred.arrows");
        assert_eq!(ChunkSource::Stdin.output_name(&meta()), "X0003_Y0004.pred.arrows");
        assert_eq!(sources("-").unwrap(), vec![ChunkSource::Stdin]);
        let empty = tempfile::tempdir().unwrap();
        let e = sources(empty.path().to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("holds no *.arrows chunk files"), "{e}");
    }
}
