//! Where time-series chunks come from: chunk files, every `*.arrows` file of a directory (sorted by
//! name, prediction chunks skipped), `*`/`?` patterns, or one stream on stdin
//! ([`treesits_core::inputs`] expands them); read batch by batch, so memory is one chunk however long
//! the stream.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use treesits_core::chunk::{ChunkColumns, ChunkMetadata, ChunkReader};
use treesits_core::inputs::{self, Input, InputFilter};

use crate::InferError;

pub use treesits_core::names::{CHUNK_SUFFIX, PREDICTION_SUFFIX};

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

/// An open chunk stream: its metadata, then its batches one by one, read through core's
/// [`ChunkReader`], which checks every message's framing, the checksums and the end-of-stream marker.
pub struct ChunkStream {
    input: ChunkSource,
    reader: ChunkReader<BufReader<Box<dyn Read + Send>>>,
}

impl ChunkStream {
    pub fn new(reader: Box<dyn Read + Send>, input: ChunkSource) -> Result<ChunkStream, InferError> {
        let reader =
            ChunkReader::new(BufReader::new(reader)).map_err(|source| InferError::ChunkMetadata {
                input: input.clone(),
                source,
            })?;
        Ok(ChunkStream { input, reader })
    }

    pub fn metadata(&self) -> &ChunkMetadata {
        self.reader.metadata()
    }

    pub fn source(&self) -> &ChunkSource {
        &self.input
    }

    /// The next chunk, `None` at the end-of-stream marker; a stream cut short or damaged is an error.
    pub fn next_chunk(&mut self) -> Result<Option<ChunkColumns>, InferError> {
        let input = || self.input.clone();
        match self.reader.next() {
            Some(Ok(columns)) => {
                let listed = self.reader.metadata().band_names.len();
                if columns.bands.len() != listed {
                    return Err(InferError::BandColumns {
                        input: input(),
                        got: columns.bands.len(),
                        listed,
                    });
                }
                Ok(Some(columns))
            }
            Some(Err(source)) => Err(InferError::ChunkColumns {
                input: input(),
                source,
            }),
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

    /// The error and its cause, as the binary prints them.
    fn with_cause(e: InferError) -> String {
        match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
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
        let e = with_cause(s.next_chunk().unwrap_err());
        assert!(
            e.starts_with("b: the stream is cut short (no end-of-stream marker)"),
            "{e}"
        );

        // Cut inside a batch.
        let cut = bytes[..bytes.len() - 40].to_vec();
        let mut s = ChunkStream::new(Box::new(std::io::Cursor::new(cut)), file("c")).unwrap();
        s.next_chunk().unwrap();
        let e = with_cause(s.next_chunk().unwrap_err());
        assert!(e.starts_with("c: ") && e.contains("re-run cube-extract"), "{e}");

        for garbage in [&b"garbage!"[..], b"ab", &bytes[..12]] {
            let e = with_cause(
                ChunkStream::new(Box::new(std::io::Cursor::new(garbage.to_vec())), file("d"))
                    .err()
                    .unwrap(),
            );
            assert!(e.starts_with("d: ") && e.contains("re-run cube-extract"), "{e}");
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
