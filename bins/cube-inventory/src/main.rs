//! `cube-inventory`: what a map is made from, per tile, and which tiles changed since the last map.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use rayon::prelude::*;
use treesits_cli::{EXIT_OK, EXIT_UNCHANGED};
use treesits_core::atomic::write_bytes;
use treesits_core::inventory::{compare, sha256_hex, Inventory, Selection, Span, TileChange, TileStatus};
use treesits_core::tiles_csv::parse_tiles_csv;
use treesits_core::Location;
use treesits_core::{Date, Sensor};
use treesits_cube::inventory::{scan_inventory, TileInput};

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

/// Inventories of hundreds of tiles with hundreds of acquisitions each run to tens of megabytes.
const MAX_TEXT_BYTES: usize = 1 << 30;

/// Reads a text file through GDAL's virtual file systems (local or s3://).
fn read_text(what: &str, path: &str) -> std::io::Result<String> {
    let loc = Location::parse(path).map_err(std::io::Error::other)?;
    let bytes = treesits_gdal::vsi_text::read_bytes(&loc.gdal_path(), MAX_TEXT_BYTES)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{what}: {e}")))?;
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{what} {path}: not UTF-8 text"),
        )
    })
}

/// The tiles to inventory, from --tiles, --tile, the previous inventory or the cube.
fn tile_inputs(
    common: &Common,
    cube: &Location,
    previous: Option<&Inventory>,
) -> anyhow::Result<Vec<TileInput>> {
    if let Some(csv) = &common.tiles {
        let text = read_text("--tiles", csv)?;
        let rows = parse_tiles_csv(&text).with_context(|| format!("--tiles {csv}"))?;
        let csv_loc = Location::parse(csv).map_err(anyhow::Error::msg)?;
        return Ok(rows
            .into_iter()
            .map(|r| TileInput {
                tile_id: r.tile_id.to_string(),
                mask: Some(csv_loc.sibling(&r.mask)),
                mask_name: Some(r.mask),
                mask_sha256: None,
            })
            .collect());
    }
    if !common.tile.is_empty() {
        let mut ids = Vec::new();
        for t in &common.tile {
            let id: treesits_core::TileId = t
                .parse()
                .map_err(|_| anyhow::anyhow!("--tile {t}: not a tile id like X0058_Y0056"))?;
            ids.push(id.to_string());
        }
        ids.sort();
        ids.dedup();
        return Ok(ids
            .into_iter()
            .map(|tile_id| TileInput {
                tile_id,
                mask: None,
                mask_name: None,
                mask_sha256: None,
            })
            .collect());
    }
    if let Some(prev) = previous {
        // The previous tiles, with their masks as recorded (not read again: a new AOI is a new
        // run, not a cube update).
        return Ok(prev
            .tiles
            .iter()
            .map(|t| TileInput {
                tile_id: t.tile_id.clone(),
                mask: None,
                mask_name: t.mask.clone(),
                mask_sha256: t.mask_sha256.clone(),
            })
            .collect());
    }
    let ids = treesits_gdal::listing::cube_tiles(&cube.gdal_path())?;
    Ok(ids
        .into_iter()
        .map(|id| TileInput {
            tile_id: id.to_string(),
            mask: None,
            mask_name: None,
            mask_sha256: None,
        })
        .collect())
}

/// The selection: from the flags when any of --sensors, --start, --end, --window is given (the
/// rest take their defaults), else the previous inventory's.
fn selection(common: &Common, previous: Option<&Inventory>) -> anyhow::Result<Selection> {
    let given =
        common.sensors.is_some() || common.start.is_some() || common.end.is_some() || common.window.is_some();
    if let (false, Some(p)) = (given, previous) {
        return Ok(p.selection.clone());
    }
    let sensors = common.sensors.as_deref().unwrap_or("SEN2A,SEN2B,SEN2C");
    let sensors: Vec<String> = Sensor::parse_list(sensors)
        .context("--sensors")?
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    if let (Some(s), Some(e)) = (common.start, common.end) {
        if s > e {
            bail!("empty date range: --start {s} is after --end {e}");
        }
    }
    Ok(Selection {
        sensors,
        start: common.start,
        end: common.end,
        window: common.window,
        as_of: common.as_of,
    })
}

/// The recipe: the model's SHA-256 and the --param values, or the previous one when none is given.
fn recipe(common: &Common, previous: Option<&Inventory>) -> anyhow::Result<BTreeMap<String, String>> {
    if common.model.is_none() && common.params.is_empty() {
        return Ok(previous.map(|p| p.recipe.clone()).unwrap_or_default());
    }
    let mut recipe: BTreeMap<String, String> = common.params.iter().cloned().collect();
    if let Some(model) = &common.model {
        let loc = Location::parse(model).map_err(anyhow::Error::msg)?;
        let bytes = treesits_gdal::vsi_text::read_bytes(&loc.gdal_path(), 4 << 30)
            .with_context(|| format!("--model {model}"))?;
        recipe.insert("model_sha256".into(), sha256_hex(&bytes));
    }
    Ok(recipe)
}

/// Unchanged tiles whose products are missing under --reuse become changed.
fn require_products(reuse: &str, inventory: &Inventory, changes: &mut [TileChange]) -> anyhow::Result<()> {
    let root = Location::parse(reuse).map_err(anyhow::Error::msg)?;
    let missing: Vec<bool> = changes
        .par_iter()
        .map(|c| {
            if c.status != TileStatus::Unchanged {
                return false;
            }
            let tile = inventory.tile(&c.tile_id).expect("unchanged tiles are current");
            let dir = root.join(&c.tile_id).join(&tile.product_key(&inventory.recipe));
            treesits_gdal::listing::list_files(&dir).map_or(true, |files| files.is_empty())
        })
        .collect();
    for (c, missing) in changes.iter_mut().zip(missing) {
        if missing {
            c.status = TileStatus::Changed;
            c.products_missing = true;
            log::info!("{}: no products under --reuse {reuse} to reuse", c.tile_id);
        }
    }
    Ok(())
}

fn plan_csv(inventory: &Inventory, changes: &[TileChange]) -> String {
    let mut out =
        String::from("tile_id,status,fingerprint,product_key,acquisitions,first_date,last_date,reason\n");
    for c in changes {
        let date = |d: Option<Date>| d.map(|d| d.to_string()).unwrap_or_default();
        let (fingerprint, key, n, first, last) = match inventory.tile(&c.tile_id) {
            Some(t) => (
                t.fingerprint.clone(),
                t.product_key(&inventory.recipe),
                t.acquisitions.len(),
                date(t.first_date()),
                date(t.last_date()),
            ),
            None => Default::default(),
        };
        out.push_str(&format!(
            "{},{},{fingerprint},{key},{n},{first},{last},{}\n",
            c.tile_id,
            c.status.name(),
            c.reason()
        ));
    }
    out
}

fn software() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("treesits".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ("gdal".to_string(), gdal::version::version_info("RELEASE_NAME")),
    ])
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    let (common, previous_path) = match &cli.command {
        Command::Scan { common } => (common, None),
        Command::Check { previous, common } => (common, Some(previous.as_str())),
    };
    let threads = common
        .threads
        .map_or_else(|| 4 * treesits_cli::default_threads(), |t| t as usize);
    treesits_cli::start_thread_pool(Some(threads))?;
    let previous = match previous_path {
        None => None,
        Some(path) => match read_text("--previous", path) {
            Ok(text) => Some(Inventory::from_json(&text).with_context(|| format!("--previous {path}"))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::warn!("no previous inventory at {path}: every tile counts as new");
                None
            }
            Err(e) => return Err(e.into()),
        },
    };
    let cube = Location::parse(&common.cube).map_err(anyhow::Error::msg)?;
    let tiles = tile_inputs(common, &cube, previous.as_ref())?;
    if tiles.is_empty() {
        bail!("no tiles to inventory: --tiles lists none");
    }
    let selection = selection(common, previous.as_ref())?;
    let recipe = recipe(common, previous.as_ref())?;
    let started = std::time::Instant::now();
    let inventory = scan_inventory(&cube, &common.cube, &tiles, &selection, recipe, software())?;
    let files: usize = inventory.tiles.iter().map(|t| 2 * t.acquisitions.len()).sum();
    log::info!(
        "{} tiles, {files} files in the window {} .. {} listed in {:.2} s",
        inventory.tiles.len(),
        inventory.window_start.map_or("(open)".into(), |d| d.to_string()),
        inventory.window_end.map_or("(open)".into(), |d| d.to_string()),
        started.elapsed().as_secs_f64()
    );
    let mut changes = match &previous {
        Some(prev) => compare(prev, &inventory),
        None => inventory
            .tiles
            .iter()
            .map(|t| TileChange::new_tile(&t.tile_id))
            .collect(),
    };
    if let Some(reuse) = &common.reuse {
        require_products(reuse, &inventory, &mut changes)?;
    }
    let unchanged: std::collections::BTreeSet<&str> = changes
        .iter()
        .filter(|c| c.status == TileStatus::Unchanged)
        .map(|c| c.tile_id.as_str())
        .collect();
    let mut inventory = inventory;
    inventory.record_makers(previous.as_ref(), &|id| unchanged.contains(id));
    if let Some(plan) = &common.plan {
        write_bytes(plan, plan_csv(&inventory, &changes).as_bytes())
            .with_context(|| format!("--plan {}", plan.display()))?;
    }
    match common.out.as_deref() {
        Some("-") => std::io::stdout()
            .lock()
            .write_all(inventory.to_json().as_bytes())?,
        Some(out) => {
            write_bytes(out, inventory.to_json().as_bytes()).with_context(|| format!("--out {out}"))?;
        }
        None => {}
    }
    if previous_path.is_none() {
        return Ok(EXIT_OK);
    }
    let changed: Vec<&TileChange> = changes
        .iter()
        .filter(|c| c.status != TileStatus::Unchanged)
        .collect();
    if common.out.as_deref() != Some("-") {
        let mut stdout = std::io::stdout().lock();
        for c in &changed {
            writeln!(stdout, "{}\t{}\t{}", c.tile_id, c.status.name(), c.reason())?;
        }
    }
    log::info!("{} of {} tiles changed", changed.len(), changes.len());
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
