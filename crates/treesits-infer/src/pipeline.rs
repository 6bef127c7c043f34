//! The whole run: chunks are read and packed on one thread, handed over through a bounded channel
//! (so reading overlaps inference and memory stays a few chunks), run through the model on the calling
//! thread, and written as prediction chunks: one file per input (all renamed into place together at
//! the end, none on error) or one stream on stdout.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Instant;

use treesits_core::atomic::AtomicPath;
use treesits_core::chunk::{ChunkColumns, ChunkError, ChunkMetadata};
use treesits_core::contract::ModelContract;
use treesits_core::prediction::{PredictionMetadata, PredictionWriter, Uncertainty};
use treesits_core::PixelWindow;

use crate::classify::Classifier;
use crate::input::ChunkSource;
use crate::pack::{PackedChunk, Packer};
use crate::runtime::ModelSession;
use crate::InferError;

/// Chunks packed ahead of inference (each holds one chunk's tensors).
const QUEUE_CHUNKS: usize = 2;

/// Where predictions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// One `.pred.arrows` file per input stream in this directory.
    Dir(PathBuf),
    /// One stream on stdout, one batch per input batch.
    Stdout,
}

/// A checked plan for a run.
#[derive(Debug, Clone)]
pub struct PredictPlan {
    pub sources: Vec<ChunkSource>,
    pub destination: Destination,
    /// Pixels per model call.
    pub batch_size: usize,
    pub probabilities: bool,
    pub uncertainty: Option<Uncertainty>,
    /// For `--out -` with files: the metadata of the one output stream (checked up front).
    stdout_meta: Option<ChunkMetadata>,
    /// The tile area of every input (rows × columns from their metadata), pixels; `None` with stdin
    /// among them.
    pub total_pixels: Option<u64>,
}

/// One chunk predicted, for a progress display.
#[derive(Debug, Clone)]
pub struct ChunkDone<'a> {
    pub input: &'a ChunkSource,
    /// Which chunk of its input stream (0-based) and how many the stream has.
    pub chunk: usize,
    pub chunks_in_stream: usize,
    /// The chunk's pixels in the file (with and without observations; a masked chunk holds only
    /// the pixels of its mask).
    pub pixels: usize,
    /// The tile area the chunk stands for, pixels: its rows × columns (a whole-tile stream's area
    /// shared among its chunks). These add up to [`PredictPlan::total_pixels`].
    pub area: u64,
}

/// What a run tells as it goes: the pixels to predict (`None` when an input is stdin, whose size is
/// known only as it streams) before the first chunk, then every chunk predicted.
pub trait PredictProgress {
    fn start(&self, total_pixels: Option<u64>);
    fn chunk(&self, done: &ChunkDone<'_>);
}

/// No progress shown.
impl PredictProgress for () {
    fn start(&self, _: Option<u64>) {}
    fn chunk(&self, _: &ChunkDone<'_>) {}
}

/// Totals of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub streams: usize,
    pub chunks: usize,
    pub pixels: usize,
    pub empty_pixels: usize,
    pub observations: usize,
    /// Seconds spent in the model.
    pub inference_seconds: f64,
    /// Files written (empty for stdout).
    pub written: Vec<PathBuf>,
}

impl PredictPlan {
    /// Checks every input file's metadata against the contract before any work (stdin is checked
    /// when its stream starts, still before anything is written).
    pub fn new(
        sources: Vec<ChunkSource>,
        destination: Destination,
        batch_size: usize,
        probabilities: bool,
        uncertainty: Option<Uncertainty>,
        session: &ModelSession,
    ) -> Result<PredictPlan, InferError> {
        let mut metas = Vec::new();
        for s in &sources {
            if let ChunkSource::File(_) = s {
                let stream = s.open()?;
                Packer::new(
                    session.contract(),
                    stream.metadata(),
                    session.shape().fixed_length,
                )
                .map_err(|source| InferError::Unfit {
                    input: s.clone(),
                    source,
                })?;
                metas.push((s.clone(), stream.metadata().clone()));
            }
        }
        let total_pixels = (metas.len() == sources.len()).then(|| {
            metas
                .iter()
                .map(|(_, m)| (m.window.rows * m.window.cols) as u64)
                .sum()
        });
        let stdout_meta = match (&destination, metas.len()) {
            (Destination::Stdout, n) if n > 0 => Some(merged_metadata(&metas)?),
            _ => None,
        };
        Ok(PredictPlan {
            sources,
            destination,
            batch_size: batch_size.max(1),
            probabilities,
            uncertainty,
            stdout_meta,
            total_pixels,
        })
    }

    /// Runs the plan. On error every file written so far is removed and nothing is renamed into
    /// place.
    pub fn run(
        &self,
        session: &mut ModelSession,
        progress: &dyn PredictProgress,
    ) -> Result<Summary, InferError> {
        progress.start(self.total_pixels);
        if let Destination::Dir(d) = &self.destination {
            std::fs::create_dir_all(d).map_err(|source| InferError::OutDir {
                dir: d.clone(),
                source,
            })?;
        }
        let (tx, rx) = sync_channel(QUEUE_CHUNKS);
        let sources = self.sources.clone();
        let contract = session.contract().clone();
        let fixed_length = session.shape().fixed_length;
        let batch_size = self.batch_size;
        let reader = std::thread::Builder::new()
            .name("read-pack".into())
            .spawn(move || read_and_pack(&sources, &contract, fixed_length, batch_size, &tx))
            .map_err(|source| InferError::ReaderThread { source })?;
        // On error the receiver is dropped, which stops the reader at its next hand-over; it is not
        // joined (it may be blocked on stdin).
        let summary = self.consume(rx, session, progress)?;
        let _ = reader.join();
        Ok(summary)
    }

    fn consume(
        &self,
        rx: Receiver<Message>,
        session: &mut ModelSession,
        progress: &dyn PredictProgress,
    ) -> Result<Summary, InferError> {
        let classifier = Classifier::new(session.contract(), self.probabilities, self.uncertainty);
        let mut summary = Summary::default();
        let mut pending: Vec<AtomicPath> = Vec::new();
        let mut stdout: Option<Writer> = None;
        // The file being written for the current input stream (`--out-dir`).
        let mut current: Option<(Writer, AtomicPath)> = None;
        let mut input = ChunkSource::Stdin;
        let mut target = PathBuf::from("stdout");
        let mut chunk_in_stream = 0;
        let mut chunks_in_stream = 0;
        let (mut stream_area, mut stream_chunks, mut area_left) = (0u64, 1u64, 0u64);
        for message in rx {
            match message {
                Message::Begin { source, meta } => {
                    input = self.sources[source].clone();
                    chunk_in_stream = meta.chunk_index.unwrap_or(0);
                    chunks_in_stream = meta.chunk_count;
                    stream_area = (meta.window.rows * meta.window.cols) as u64;
                    stream_chunks = if meta.chunk_index.is_some() {
                        1
                    } else {
                        meta.chunk_count.max(1) as u64
                    };
                    area_left = stream_area;
                    summary.streams += 1;
                    match &self.destination {
                        Destination::Dir(dir) => {
                            target = dir.join(self.sources[source].output_name(&meta));
                            let atomic = AtomicPath::new(&target);
                            let file = File::create(atomic.temp()).map_err(|source| InferError::Write {
                                path: atomic.temp().to_path_buf(),
                                source,
                            })?;
                            let out: Box<dyn Write> = Box::new(BufWriter::new(file));
                            let writer = PredictionWriter::new(out, &self.metadata(session, meta))
                                .map_err(|e| output_err(&target, e))?;
                            current = Some((writer, atomic));
                        }
                        Destination::Stdout if stdout.is_none() => {
                            let meta = self.stdout_meta.clone().unwrap_or(meta);
                            let out: Box<dyn Write> = Box::new(BufWriter::new(std::io::stdout()));
                            stdout = Some(
                                PredictionWriter::new(out, &self.metadata(session, meta))
                                    .map_err(|e| output_err(Path::new("stdout"), e))?,
                            );
                        }
                        Destination::Stdout => {}
                    }
                }
                Message::Chunk { columns, packed } => {
                    let started = Instant::now();
                    let mut out = classifier.empty_columns(&columns);
                    for batch in &packed.batches {
                        let outputs = session.run(batch).map_err(|e| InferError::InStream {
                            input: input.clone(),
                            source: Box::new(e),
                        })?;
                        classifier.fill(&mut out, &batch.pixels, &outputs);
                    }
                    let inference = started.elapsed().as_secs_f64();
                    let writer = match (&mut current, &mut stdout) {
                        (Some((w, _)), _) => w,
                        (None, Some(w)) => w,
                        (None, None) => unreachable!("a chunk always follows its stream's start"),
                    };
                    writer.write(&out).map_err(|e| output_err(&target, e))?;
                    let positions = packed.positions();
                    let used: usize = packed.batches.iter().map(|b| b.observations).sum();
                    // The stream's last chunk takes what is left of its area.
                    let last = stream_chunks == 1 || chunk_in_stream + 1 >= chunks_in_stream;
                    let area = if last {
                        area_left
                    } else {
                        (stream_area / stream_chunks).min(area_left)
                    };
                    area_left -= area;
                    progress.chunk(&ChunkDone {
                        input: &input,
                        chunk: chunk_in_stream,
                        chunks_in_stream,
                        pixels: packed.pixels,
                        area,
                    });
                    log::debug!(
                        "{input} chunk {} of {chunks_in_stream}: {} pixels ({} without observations), {} observations, {} batches ({:.0}% padding), {:.0} pixels/s in the model",
                        chunk_in_stream + 1,
                        packed.pixels,
                        packed.empty_pixels,
                        packed.observations,
                        packed.batches.len(),
                        if positions == 0 { 0.0 } else { 100.0 * (positions - used) as f64 / positions as f64 },
                        (packed.pixels - packed.empty_pixels) as f64 / inference.max(1e-9)
                    );
                    chunk_in_stream += 1;
                    summary.chunks += 1;
                    summary.pixels += packed.pixels;
                    summary.empty_pixels += packed.empty_pixels;
                    summary.observations += packed.observations;
                    summary.inference_seconds += inference;
                }
                Message::End => {
                    if let Some((writer, atomic)) = current.take() {
                        let target = atomic.target().to_path_buf();
                        let mut inner = writer.finish().map_err(|e| output_err(&target, e))?;
                        inner.flush().map_err(|source| InferError::Write {
                            path: target.clone(),
                            source,
                        })?;
                        drop(inner);
                        pending.push(atomic);
                    }
                }
                Message::Failed(e) => return Err(e),
            }
        }
        if let Some(writer) = stdout {
            let mut inner = writer.finish().map_err(|e| output_err(Path::new("stdout"), e))?;
            inner.flush().map_err(InferError::Stdout)?;
        }
        if summary.streams < self.sources.len() {
            return Err(InferError::ReaderStopped);
        }
        for atomic in pending {
            let target = atomic.target().to_path_buf();
            summary.written.push(
                atomic
                    .commit()
                    .map_err(|source| InferError::Write { path: target, source })?,
            );
        }
        Ok(summary)
    }

    fn metadata(&self, session: &ModelSession, source: ChunkMetadata) -> PredictionMetadata {
        let c = session.contract();
        PredictionMetadata {
            source,
            model_id: c.model_id.clone(),
            model_sha256: Some(session.model_sha256().to_string()),
            model_file: Some(session.model_file().to_string()),
            model_contract: Some(c.clone()),
            classes: c.classes.clone(),
            probabilities: self.probabilities,
            uncertainty: self.uncertainty,
        }
    }
}

fn output_err(target: &Path, e: ChunkError) -> InferError {
    // A closed stdout (`predict … | head`) must stay a broken pipe, which the binary treats as success.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return InferError::Stdout(std::io::ErrorKind::BrokenPipe.into());
            }
        }
        cause = c.source();
    }
    InferError::WritePredictions {
        path: target.to_path_buf(),
        source: e,
    }
}

type Writer = PredictionWriter<Box<dyn Write>>;

/// What the reader thread hands over.
enum Message {
    Begin {
        source: usize,
        meta: ChunkMetadata,
    },
    Chunk {
        columns: ChunkColumns,
        packed: PackedChunk,
    },
    End,
    Failed(InferError),
}

fn read_and_pack(
    sources: &[ChunkSource],
    contract: &ModelContract,
    fixed_length: Option<usize>,
    batch_size: usize,
    tx: &SyncSender<Message>,
) {
    let run = || -> Result<(), Option<InferError>> {
        // A send fails only when the consumer has stopped (after an error): just stop too.
        let send = |m: Message| tx.send(m).map_err(|_| None);
        for (i, source) in sources.iter().enumerate() {
            let mut stream = source.open()?;
            let packer =
                Packer::new(contract, stream.metadata(), fixed_length).map_err(|e| InferError::Unfit {
                    input: source.clone(),
                    source: e,
                })?;
            send(Message::Begin {
                source: i,
                meta: stream.metadata().clone(),
            })?;
            while let Some(columns) = stream.next_chunk()? {
                let packed = packer.pack(&columns, batch_size);
                // Only row and col are needed to write the output: drop the observations now.
                let columns = ChunkColumns {
                    row: columns.row,
                    col: columns.col,
                    offsets: columns.offsets,
                    ..Default::default()
                };
                send(Message::Chunk { columns, packed })?;
            }
            send(Message::End)?;
        }
        Ok(())
    };
    if let Err(Some(e)) = run() {
        let _ = tx.send(Message::Failed(e));
    }
}

/// The metadata of one stream holding several chunk files of one tile: the same in everything but
/// the window (their union) and the chunk index (`all`).
fn merged_metadata(metas: &[(ChunkSource, ChunkMetadata)]) -> Result<ChunkMetadata, InferError> {
    let (first_label, first) = &metas[0];
    if metas.len() == 1 {
        return Ok(first.clone());
    }
    let normal = |m: &ChunkMetadata| ChunkMetadata {
        window: first.window,
        chunk_index: None,
        ..m.clone()
    };
    let mut merged = normal(first);
    let (mut top, mut bottom) = (first.window.row, first.window.row + first.window.rows);
    let (mut left, mut right) = (first.window.col, first.window.col + first.window.cols);
    for (label, m) in &metas[1..] {
        if normal(m) != merged {
            return Err(InferError::StdoutMixed {
                input: label.clone(),
                first: first_label.clone(),
            });
        }
        top = top.min(m.window.row);
        bottom = bottom.max(m.window.row + m.window.rows);
        left = left.min(m.window.col);
        right = right.max(m.window.col + m.window.cols);
    }
    merged.window = PixelWindow {
        row: top,
        col: left,
        rows: bottom - top,
        cols: right - left,
    };
    Ok(merged)
}
