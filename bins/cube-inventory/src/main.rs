//! `cube-inventory`: what a map is made from, per tile, and which tiles changed since the last map.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use treesits_cli::{EXIT_OK, EXIT_UNCHANGED};
use treesits_core::atomic::write_bytes;
use treesits_core::inventory::Span;
use treesits_core::{Date, TileId};
use treesits_cube::inventory_check::{self, InventoryRequest};

/// Tile inventory of a FORCE cube: what a map is made from, and which tiles changed since.
///
/// `scan` lists the tiles' directories and records, per tile, the acquisitions a run would use (date,
/// sensor, the BOA and QAI files' names, sizes and modification times), the mask's SHA-256 and a
/// fingerprint of all of it. `check` does the same and compares with a previous inventory: it prints
/// one line per tile whose inputs changed (an acquisition added, removed or replaced, a new mask, a
/// new model or parameter), and exits with status 3 when none did. Only directory listings are read
/// (one per tile; on S3 one request per 1000 files), never the rasters.
///
/// Exit status: 0 success (check: some tile changed), 1 bad input or I/O error, 2 usage error,
/// 3 (check only) nothing changed.
#[derive(Debug, Parser)]
#[command(name = "cube-inventory", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: treesits_cli::LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Record the inventory of the selected tiles.
    Scan {
        #[command(flatten)]
        common: Common,
    },
    /// Compare the cube with a previous inventory; exit 3 when no tile changed.
    Check {
        /// The inventory of the last map (local or s3://…/inventory.json). Tiles, sensors, window
        /// and recipe default to the ones it records. When it does not exist every tile is new.
        #[arg(long, value_name = "FILE|S3URL")]
        previous: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// FORCE cube root (the directory holding the Xdddd_Ydddd tile directories), local or s3://….
    #[arg(long, value_name = "DIR|S3URL")]
    cube: String,
    /// The tiles and masks to inventory: a tiles.csv written by aoi-select (masks are read relative
    /// to it). Default (scan): every tile directory of the cube; (check): the previous inventory's
    /// tiles, with the masks it recorded.
    #[arg(long, value_name = "FILE", conflicts_with = "tile")]
    tiles: Option<String>,
    /// Tiles to inventory by id, comma-separated (no masks).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    tile: Vec<String>,
    /// Sensors, comma-separated (default: SEN2A,SEN2B,SEN2C). check: without any of --sensors,
    /// --start, --end and --window the previous inventory's sensors and window are used; with any
    /// of them, these flags define both.
    #[arg(long, value_name = "LIST")]
    sensors: Option<String>,
    /// Fixed window: first acquisition date (inclusive), YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD", conflicts_with = "window")]
    start: Option<Date>,
    /// Fixed window: last acquisition date (inclusive), YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD", conflicts_with = "window")]
    end: Option<Date>,
    /// Rolling window: its length in days (365D) or calendar months (12M), ending on --as-of or,
    /// without it, on the newest selected acquisition of all the tiles. A new acquisition can then
    /// push old ones out of the window, which changes those tiles too.
    #[arg(long, value_name = "SPAN")]
    window: Option<Span>,
    /// End of the rolling window (inclusive), YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD", requires = "window")]
    as_of: Option<Date>,
    /// The ONNX model: its SHA-256 becomes part of the recipe (a new model changes every tile).
    #[arg(long, value_name = "FILE")]
    model: Option<String>,
    /// A processing parameter that changes the products (KEY=VALUE, repeatable), e.g. screen=cloud.
    /// Part of the recipe: a different value changes every tile.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Where the products of earlier runs are published, <DIR>/<tile>/<product key>/ (local or
    /// s3://…). An unchanged tile whose products are not there counts as changed.
    #[arg(long, value_name = "DIR|S3URL")]
    reuse: Option<String>,
    /// Write the inventory here (JSON; `-`: stdout). Written atomically.
    #[arg(long, value_name = "FILE")]
    out: Option<String>,
    /// Write the per-tile plan here (CSV: tile_id,status,fingerprint,product_key,acquisitions,
    /// first_date,last_date,reason). Written atomically.
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    /// Threads listing tile directories at once (default: 4 per CPU; listings wait on I/O).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains(char::is_whitespace) => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

impl Common {
    /// The request the flags describe.
    fn request(&self, previous: Option<&str>) -> anyhow::Result<InventoryRequest> {
        let mut tile_ids = Vec::new();
        for t in &self.tile {
            let id: TileId = t
                .parse()
                .map_err(|_| anyhow::anyhow!("--tile {t}: not a tile id like X0058_Y0056"))?;
            tile_ids.push(id);
        }
        Ok(InventoryRequest {
            cube: self.cube.clone(),
            previous: previous.map(str::to_string),
            tiles_csv: self.tiles.clone(),
            tile_ids,
            sensors: self.sensors.clone(),
            start: self.start,
            end: self.end,
            window: self.window,
            as_of: self.as_of,
            model: self.model.clone(),
            params: self.params.clone(),
            reuse: self.reuse.clone(),
            plan: self.plan.clone(),
            software: BTreeMap::from([
                ("treesits".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("gdal".to_string(), gdal::version::version_info("RELEASE_NAME")),
            ]),
        })
    }
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    let (common, previous) = match &cli.command {
        Command::Scan { common } => (common, None),
        Command::Check { previous, common } => (common, Some(previous.as_str())),
    };
    let threads = common
        .threads
        .map_or_else(|| 4 * treesits_cli::default_threads(), |t| t as usize);
    treesits_cli::start_thread_pool(Some(threads))?;
    let outcome = inventory_check::run(&common.request(previous)?)?;
    let json = outcome.inventory.to_json();
    match common.out.as_deref() {
        Some("-") => std::io::stdout().lock().write_all(json.as_bytes())?,
        Some(out) => {
            write_bytes(out, json.as_bytes()).with_context(|| format!("--out {out}"))?;
        }
        None => {}
    }
    if previous.is_none() {
        return Ok(EXIT_OK);
    }
    let changed = outcome.changed();
    if common.out.as_deref() != Some("-") {
        let mut stdout = std::io::stdout().lock();
        for c in &changed {
            writeln!(stdout, "{}\t{}\t{}", c.tile_id, c.status.name(), c.reason())?;
        }
    }
    log::info!("{} of {} tiles changed", changed.len(), outcome.changes.len());
    Ok(if changed.is_empty() {
        EXIT_UNCHANGED
    } else {
        EXIT_OK
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    treesits_cli::init_logging(&cli.log);
    treesits_gdal::error::log_messages();
    treesits_gdal::config::set_network_defaults();
    treesits_cli::run_status("cube-inventory", || run(&cli))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn params_are_key_value() {
        assert_eq!(
            super::parse_param("screen=cloud,shadow").unwrap(),
            ("screen".to_string(), "cloud,shadow".to_string())
        );
        assert!(super::parse_param("=x").is_err());
        assert!(super::parse_param("novalue").is_err());
    }
}
