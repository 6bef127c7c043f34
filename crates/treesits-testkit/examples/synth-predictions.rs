//! Writes prediction chunks of a synthetic cube (without writing the cube itself), for benchmarks and
//! demos of `mosaic`:
//!
//! `cargo run --release -p treesits-testkit --example synth-predictions -- OUT_DIR [TILES] [PIXELS] [CHUNK_ROWS]`

use treesits_testkit::predictions::{tile_predictions, PredictionSpec};
use treesits_testkit::SynthConfig;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: synth-predictions OUT_DIR [TILES=4] [PIXELS=200] [CHUNK_ROWS=64]");
        std::process::exit(2);
    };
    let num = |i: usize, default: usize| {
        args.get(i).map_or(default, |s| {
            s.parse().unwrap_or_else(|_| {
                eprintln!("synth-predictions: '{s}' is not a number");
                std::process::exit(2)
            })
        })
    };
    let cfg = SynthConfig {
        tiles: num(1, 4),
        tile_pixels: num(2, 200),
        ..Default::default()
    };
    let spec = PredictionSpec {
        chunk_rows: num(3, 64),
        ..Default::default()
    };
    let dir = std::path::Path::new(out);
    for tile in cfg.tile_ids() {
        let p = tile_predictions(&cfg, tile, &spec);
        let files = p.write_chunk_files(dir).unwrap_or_else(|e| {
            eprintln!("synth-predictions: writing {}: {e}", dir.display());
            std::process::exit(1)
        });
        eprintln!("{tile}: {} chunks", files.len());
    }
}
