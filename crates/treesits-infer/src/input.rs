//! Where time-series chunks come from: chunk files, every `*.arrows` file of a directory (sorted by
//! name, prediction chunks skipped), `*`/`?` patterns, or one stream on stdin
//! ([`treesits_core::inputs`] expands them); read batch by batch, so memory is one chunk however long
//! the stream.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow_ipc::reader::StreamReader;
use treesits_core::chunk::{ChunkColumns, ChunkMetadata};
use treesits_core::inputs::{self, Input, InputFilter};

use crate::{InferError, StreamDamage};

pub use treesits_core::names::{CHUNK_SUFFIX, PREDICTION_SUFFIX};

/// Largest schema message accepted at the start of a stream (a chunk's is a few KiB).
const SCHEMA_MESSAGE_MAX: i32 = 16 << 20;

/// One input stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkSource {
    File(PathBuf),
    Stdin,
}

impl std::fmt::Display for ChunkSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkSource::File(p) => write!(f, "{}", p.display()),
            ChunkSource::Stdin => f.write_str("stdin"),
        }
    }
}

impl From<Input> for ChunkSource {
    fn from(i: Input) -> ChunkSource {
        match i {
            Input::File(p) => ChunkSource::File(p),
            Input::Stdin => ChunkSource::Stdin,
        }
    }
}

impl ChunkSource {
    /// How the source is named in messages.
    pub fn label(&self) -> String {
        self.to_string()
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
                treesits_core::names::prediction_file_name(&name)
            }
            ChunkSource::Stdin => format!("{}{PREDICTION_SUFFIX}", meta.tile_id),
        }
    }

    /// Opens the stream and reads its metadata.
    pub fn open(&self) -> Result<ChunkStream, InferError> {
        let reader: Box<dyn Read + Send> = match self {
            ChunkSource::File(p) => Box::new(File::open(p).map_err(|source| InferError::OpenChunk {
                path: p.clone(),
                source,
            })?),
            ChunkSource::Stdin => Box::new(std::io::stdin()),
        };
        ChunkStream::new(reader, self.clone())
    }
}

/// Expands `--input` values (treesits_core::inputs): `-` (stdin), chunk files, directories (their
/// `*.arrows` files by name, prediction chunks and hidden files skipped) and `*`/`?` patterns.
pub fn sources(args: &[String]) -> Result<Vec<ChunkSource>, InferError> {
    let filter = InputFilter::new(CHUNK_SUFFIX)
        .excluding(PREDICTION_SUFFIX)
        .written_by("cube-extract --out-dir");
    Ok(inputs::expand(args, &filter)
        .map_err(InferError::Inputs)?
        .into_iter()
        .map(ChunkSource::from)
        .collect())
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
    input: ChunkSource,
    meta: ChunkMetadata,
    reader: StreamReader<BufReader<EofWatch<Box<dyn Read + Send>>>>,
    eof: Arc<AtomicBool>,
}

impl ChunkStream {
    pub fn new(mut reader: Box<dyn Read + Send>, input: ChunkSource) -> Result<ChunkStream, InferError> {
        let damaged = |cause| InferError::NotAStream {
            input: input.clone(),
            cause,
        };
        // Look at the first message's header before Arrow does: a garbage length would have it
        // allocate up to 2 GiB before failing. A stream starts with the continuation marker and the
        // length of its (small) schema message.
        let mut header = [0u8; 8];
        reader
            .read_exact(&mut header)
            .map_err(|e| damaged(StreamDamage::Io(e)))?;
        let len = i32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if header[..4] != [0xff; 4] || !(1..=SCHEMA_MESSAGE_MAX).contains(&len) {
            return Err(damaged(StreamDamage::NoHeader));
        }
        let eof = Arc::new(AtomicBool::new(false));
        let watched = EofWatch {
            inner: Box::new(std::io::Cursor::new(header).chain(reader)) as Box<dyn Read + Send>,
            eof: eof.clone(),
        };
        let reader = StreamReader::try_new(BufReader::new(watched), None)
            .map_err(|e| damaged(StreamDamage::Arrow(e)))?;
        let meta = ChunkMetadata::from_map(reader.schema().metadata()).map_err(|source| {
            InferError::ChunkMetadata {
                input: input.clone(),
                source,
            }
        })?;
        Ok(ChunkStream {
            input,
            meta,
            reader,
            eof,
        })
    }

    pub fn metadata(&self) -> &ChunkMetadata {
        &self.meta
    }

    pub fn source(&self) -> &ChunkSource {
        &self.input
    }

    /// The next chunk, `None` at the end-of-stream marker; a stream cut short is an error.
    pub fn next_chunk(&mut self) -> Result<Option<ChunkColumns>, InferError> {
        let input = || self.input.clone();
        match self.reader.next() {
            Some(Ok(batch)) => {
                let columns =
                    ChunkColumns::from_record_batch(&batch).map_err(|source| InferError::ChunkColumns {
                        input: input(),
                        source,
                    })?;
                if columns.bands.len() != self.meta.band_names.len() {
                    return Err(InferError::BandColumns {
                        input: input(),
                        got: columns.bands.len(),
                        listed: self.meta.band_names.len(),
                    });
                }
                Ok(Some(columns))
            }
            Some(Err(cause)) => Err(InferError::ReadChunk {
                input: input(),
                cause,
            }),
            None if self.eof.load(Ordering::Relaxed) => Err(InferError::Truncated { input: input() }),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use treesits_core::chunk::ChunkWriter;
    use treesits_core::{PixelWindow, Sensor, TileId};

    fn meta() -> ChunkMetadata {
        // A 10 × 10 px tile, read one row at a time.
        ChunkMetadata {
            tile_id: TileId::new(3, 4),
            tile_size: (10, 10),
            window: PixelWindow::new(0, 0, 1, 10),
            chunk_index: Some(0),
            sensors: vec![Sensor::Sen2a],
            band_names: vec!["BLUE".into()],
            qai_screen: "none".into(),
            ..ChunkMetadata::example()
        }
    }

    fn file(name: &str) -> ChunkSource {
        ChunkSource::File(name.into())
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
        let mut s = ChunkStream::new(Box::new(std::io::Cursor::new(bytes.clone())), file("a")).unwrap();
        assert_eq!(s.metadata(), &meta());
        assert_eq!(s.next_chunk().unwrap().unwrap().row, vec![0]);
        assert_eq!(s.next_chunk().unwrap().unwrap().row, vec![1]);
        assert!(s.next_chunk().unwrap().is_none());

        // Without the 8-byte end-of-stream marker: cut at a batch boundary.
        let cut = bytes[..bytes.len() - 8].to_vec();
        let mut s = ChunkStream::new(Box::new(std::io::Cursor::new(cut)), file("b")).unwrap();
        s.next_chunk().unwrap();
        s.next_chunk().unwrap();
        let e = s.next_chunk().unwrap_err().to_string();
        assert!(
            e.contains("b: the stream ends without its end-of-stream marker"),
            "{e}"
        );

        // Cut inside a batch.
        let cut = bytes[..bytes.len() - 40].to_vec();
        let mut s = ChunkStream::new(Box::new(std::io::Cursor::new(cut)), file("c")).unwrap();
        s.next_chunk().unwrap();
        let e = s.next_chunk().unwrap_err().to_string();
        assert!(e.contains("c: reading a chunk failed"), "{e}");

        for garbage in [&b"garbage!"[..], b"ab", &bytes[..12]] {
            let e = ChunkStream::new(Box::new(std::io::Cursor::new(garbage.to_vec())), file("d"))
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
        let s = sources(&[dir.path().to_str().unwrap().to_string()]).unwrap();
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
        assert_eq!(sources(&["-".into()]).unwrap(), vec![ChunkSource::Stdin]);
        let empty = tempfile::tempdir().unwrap();
        let e = sources(&[empty.path().to_str().unwrap().to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--input "), "{e}");
        assert!(
            e.ends_with("the directory holds no *.arrows files (cube-extract --out-dir writes them)"),
            "{e}"
        );
    }
}
