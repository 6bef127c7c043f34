//! The whole run: chunks are read and packed on one thread, one model batch at a time, handed over
//! through a bounded channel (so reading overlaps inference and memory stays one decoded record batch
//! plus [`BATCHES_IN_FLIGHT`] packed batches), run through the model on the calling thread, and
//! written as prediction chunks: one file per input (all renamed into place together at the end, none
//! on error) or one stream on stdout.

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

use crate::batch::{human_bytes, BATCHES_IN_FLIGHT};
use crate::classify::Classifier;
use crate::input::ChunkSource;
use crate::pack::{Batch, BatchLimits, Packer};
use crate::runtime::ModelSession;
use crate::InferError;

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
    /// The most pixels and positions (pixels × steps) of one model call.
    pub limits: BatchLimits,
    /// Bytes a decoded input record batch should stay within (a warning names the first that does
    /// not).
    pub input_share: u64,
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
        limits: BatchLimits,
        input_share: u64,
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
            limits: BatchLimits {
                pixels: limits.pixels.max(1),
                ..limits
            },
            input_share,
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
        let (tx, rx) = sync_channel(BATCHES_IN_FLIGHT);
        let reader = Reader {
            sources: self.sources.clone(),
            contract: session.contract().clone(),
            fixed_length: session.shape().fixed_length,
            limits: self.limits,
            input_share: self.input_share,
        };
        let reader = std::thread::Builder::new()
            .name("read-pack".into())
            .spawn(move || reader.run(&tx))
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
        // The record batch whose model batches are arriving.
        let mut chunk: Option<ChunkProgress> = None;
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
                Message::ChunkStart { columns, plan } => {
                    chunk = Some(ChunkProgress {
                        out: classifier.empty_columns(&columns),
                        plan,
                        batches: 0,
                        positions: 0,
                        used: 0,
                        seconds: 0.0,
                    });
                }
                Message::Batch(batch) => {
                    let c = chunk.as_mut().expect("a batch always follows its chunk's start");
                    let started = Instant::now();
                    let outputs = session.run(&batch).map_err(|e| InferError::InStream {
                        input: input.clone(),
                        source: Box::new(e),
                    })?;
                    classifier.fill(&mut c.out, &batch.pixels, &outputs);
                    c.seconds += started.elapsed().as_secs_f64();
                    c.batches += 1;
                    c.positions += batch.pixels.len() * batch.length;
                    c.used += batch.observations;
                }
                Message::ChunkEnd => {
                    let c = chunk.take().expect("a chunk's end always follows its start");
                    let writer = match (&mut current, &mut stdout) {
                        (Some((w, _)), _) => w,
                        (None, Some(w)) => w,
                        (None, None) => unreachable!("a chunk always follows its stream's start"),
                    };
                    writer.write(&c.out).map_err(|e| output_err(&target, e))?;
                    let p = &c.plan;
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
                        pixels: p.pixels,
                        area,
                    });
                    log::debug!(
                        "{input} chunk {} of {chunks_in_stream}: {} pixels ({} without observations), {} observations, {} batches ({:.0}% padding), {:.0} pixels/s in the model",
                        chunk_in_stream + 1,
                        p.pixels,
                        p.empty_pixels,
                        p.observations,
                        c.batches,
                        if c.positions == 0 { 0.0 } else { 100.0 * (c.positions - c.used) as f64 / c.positions as f64 },
                        (p.pixels - p.empty_pixels) as f64 / c.seconds.max(1e-9)
                    );
                    chunk_in_stream += 1;
                    summary.chunks += 1;
                    summary.pixels += p.pixels;
                    summary.empty_pixels += p.empty_pixels;
                    summary.observations += p.observations;
                    summary.inference_seconds += c.seconds;
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

/// What the reader thread hands over: per input stream `Begin`, then per record batch `ChunkStart`,
/// its model batches one at a time, `ChunkEnd`; `End` closes the stream.
enum Message {
    Begin {
        source: usize,
        meta: ChunkMetadata,
    },
    /// A record batch: its row, col and offsets only (what the output needs) and its counts.
    ChunkStart {
        columns: ChunkColumns,
        plan: ChunkCounts,
    },
    Batch(Batch),
    ChunkEnd,
    End,
    Failed(InferError),
}

/// What the consumer tells about a record batch once its last batch has run.
struct ChunkCounts {
    pixels: usize,
    empty_pixels: usize,
    observations: usize,
}

/// The record batch being predicted, filled batch by batch.
struct ChunkProgress {
    out: treesits_core::prediction::PredictionColumns,
    plan: ChunkCounts,
    batches: usize,
    /// Tensor positions run (padding included) and observations among them.
    positions: usize,
    used: usize,
    seconds: f64,
}

/// The packing thread: takes one decoded record batch at a time (the next is decoded meanwhile on
/// a thread of its own) and packs its model batches lazily, so the channels' bounds hold the memory
/// to one decoded record batch (+ the one being read) and [`BATCHES_IN_FLIGHT`] packed batches (+ the
/// one being packed, + the one running).
struct Reader {
    sources: Vec<ChunkSource>,
    contract: ModelContract,
    fixed_length: Option<usize>,
    limits: BatchLimits,
    input_share: u64,
}

impl Reader {
    fn run(&self, tx: &SyncSender<Message>) {
        if let Err(Some(e)) = self.read_and_pack(tx) {
            let _ = tx.send(Message::Failed(e));
        }
    }

    fn read_and_pack(&self, tx: &SyncSender<Message>) -> Result<(), Option<InferError>> {
        // A send fails only when the consumer has stopped (after an error): just stop too.
        let send = |m: Message| tx.send(m).map_err(|_| None);
        // Decoding runs one record batch ahead on its own thread (a rendezvous channel: it holds the
        // next record batch until this one is packed), so the model never waits for a file to be
        // opened and decompressed. Not joined: it may be blocked on stdin; it stops when `decoded`
        // is dropped.
        let (decoded_tx, decoded) = sync_channel(0);
        let sources = self.sources.clone();
        std::thread::Builder::new()
            .name("read".into())
            .spawn(move || decode(&sources, &decoded_tx))
            .map_err(|source| InferError::ReaderThread { source })?;
        let mut warned = false;
        let mut packer: Option<(Packer, &ChunkSource)> = None;
        for d in decoded {
            match d {
                Decoded::Stream(i, meta) => {
                    if packer.is_some() {
                        send(Message::End)?;
                    }
                    let source = &self.sources[i];
                    let p = Packer::new(&self.contract, &meta, self.fixed_length).map_err(|e| {
                        InferError::Unfit {
                            input: source.clone(),
                            source: e,
                        }
                    })?;
                    packer = Some((p, source));
                    send(Message::Begin { source: i, meta })?;
                }
                Decoded::Columns(mut columns) => {
                    let (packer, source) = packer
                        .as_ref()
                        .expect("a record batch follows its stream's start");
                    let bytes = columns.bytes() as u64;
                    if 2 * bytes > self.input_share && !warned {
                        warned = true;
                        log::warn!(
                            "{source}: a record batch of {} pixels and {} observations takes {} decoded; two at a time (the one being packed and the next) exceed the {} of the memory budget for input: smaller chunks from cube-extract (--chunk-rows) or a larger --memory keep within it",
                            columns.pixels(),
                            columns.observations(),
                            human_bytes(bytes),
                            human_bytes(self.input_share)
                        );
                    }
                    let plan = packer.plan(&columns, self.limits);
                    // Only row, col and offsets are needed to write the output; the observations
                    // stay here until the last batch is packed.
                    let head = ChunkColumns {
                        row: std::mem::take(&mut columns.row),
                        col: std::mem::take(&mut columns.col),
                        offsets: columns.offsets.clone(),
                        ..Default::default()
                    };
                    send(Message::ChunkStart {
                        columns: head,
                        plan: ChunkCounts {
                            pixels: plan.pixels,
                            empty_pixels: plan.empty_pixels,
                            observations: plan.observations,
                        },
                    })?;
                    for batch in packer.batches(&columns, &plan) {
                        send(Message::Batch(batch))?;
                    }
                    drop(columns);
                    send(Message::ChunkEnd)?;
                }
                Decoded::Failed(e) => return Err(Some(e)),
            }
        }
        if packer.is_some() {
            send(Message::End)?;
        }
        Ok(())
    }
}

/// What the decoding thread hands to the packing one.
enum Decoded {
    /// Input stream `i` opened, with its metadata.
    Stream(usize, ChunkMetadata),
    /// Its next record batch.
    Columns(ChunkColumns),
    Failed(InferError),
}

fn decode(sources: &[ChunkSource], tx: &SyncSender<Decoded>) {
    let run = || -> Result<(), Option<InferError>> {
        let send = |d: Decoded| tx.send(d).map_err(|_| None);
        for (i, source) in sources.iter().enumerate() {
            let mut stream = source.open()?;
            send(Decoded::Stream(i, stream.metadata().clone()))?;
            while let Some(columns) = stream.next_chunk()? {
                send(Decoded::Columns(columns))?;
            }
        }
        Ok(())
    };
    if let Err(Some(e)) = run() {
        let _ = tx.send(Decoded::Failed(e));
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
