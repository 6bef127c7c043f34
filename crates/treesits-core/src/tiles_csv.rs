//! The tile list `tiles.csv` written by `aoi-select` and read by the tools after it.
//!
//! One header row, then one row per selected tile, sorted by tile id:
//! `tile_id,tile_x,tile_y,xmin,ymin,xmax,ymax,pixels,mask`. The extent is in the cube's CRS, `pixels`
//! counts the mask's 1s, `mask` is the mask file name relative to the CSV. No field holds a comma,
//! so the file reads with Nextflow's `splitCsv(header: true)`, pandas or a plain `split(',')`.

use crate::grid::{Extent, TileId};

/// The header row of `tiles.csv`, without the line end.
pub const TILES_CSV_HEADER: &str = "tile_id,tile_x,tile_y,xmin,ymin,xmax,ymax,pixels,mask";

/// One row of `tiles.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct TileListRow {
    pub tile_id: TileId,
    /// Tile extent in the cube's CRS.
    pub extent: Extent,
    /// Pixels set to 1 in the mask.
    pub pixels: u64,
    /// Mask file name, relative to the directory of `tiles.csv`.
    pub mask: String,
}

/// Why a `tiles.csv` could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TilesCsvError {
    #[error("the header is not '{TILES_CSV_HEADER}'")]
    BadHeader,
    #[error("line {line}: expected 9 comma-separated fields, found {found}")]
    FieldCount { line: usize, found: usize },
    #[error("line {line}: bad {field} '{value}'")]
    BadField {
        line: usize,
        field: &'static str,
        value: String,
    },
}

impl TileListRow {
    /// The row as CSV, without the line end.
    pub fn to_csv_line(&self) -> String {
        let e = &self.extent;
        format!(
            "{},{},{},{},{},{},{},{},{}",
            self.tile_id,
            self.tile_id.x,
            self.tile_id.y,
            e.xmin,
            e.ymin,
            e.xmax,
            e.ymax,
            self.pixels,
            self.mask
        )
    }
}

/// Writes the whole file: header, then rows.
pub fn tiles_csv(rows: &[TileListRow]) -> String {
    let mut s = String::with_capacity(64 * (rows.len() + 1));
    s.push_str(TILES_CSV_HEADER);
    s.push('\n');
    for r in rows {
        s.push_str(&r.to_csv_line());
        s.push('\n');
    }
    s
}

/// Reads a whole `tiles.csv`.
pub fn parse_tiles_csv(text: &str) -> Result<Vec<TileListRow>, TilesCsvError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, h)) if h.trim() == TILES_CSV_HEADER => {}
        _ => return Err(TilesCsvError::BadHeader),
    }
    lines
        .map(|(i, l)| {
            let line = i + 1;
            let f: Vec<&str> = l.trim().split(',').collect();
            if f.len() != 9 {
                return Err(TilesCsvError::FieldCount { line, found: f.len() });
            }
            let bad = |field: &'static str, value: &str| TilesCsvError::BadField {
                line,
                field,
                value: value.to_string(),
            };
            let tile_id: TileId = f[0].parse().map_err(|_| bad("tile_id", f[0]))?;
            let num = |k: usize, field: &'static str| -> Result<f64, TilesCsvError> {
                f[k].parse::<f64>().map_err(|_| bad(field, f[k]))
            };
            let x: i32 = f[1].parse().map_err(|_| bad("tile_x", f[1]))?;
            let y: i32 = f[2].parse().map_err(|_| bad("tile_y", f[2]))?;
            if (x, y) != (tile_id.x, tile_id.y) {
                return Err(bad("tile_x/tile_y (they disagree with tile_id)", l));
            }
            Ok(TileListRow {
                tile_id,
                extent: Extent {
                    xmin: num(3, "xmin")?,
                    ymin: num(4, "ymin")?,
                    xmax: num(5, "xmax")?,
                    ymax: num(6, "ymax")?,
                },
                pixels: f[7].parse().map_err(|_| bad("pixels", f[7]))?,
                mask: f[8].to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> TileListRow {
        TileListRow {
            tile_id: TileId::new(58, 56),
            extent: Extent {
                xmin: 4_196_026.25,
                ymin: 2_864_919.5,
                xmax: 4_226_026.25,
                ymax: 2_894_919.5,
            },
            pixels: 1234,
            mask: "X0058_Y0056.mask.tif".into(),
        }
    }

    #[test]
    fn rows_round_trip_exactly() {
        let text = tiles_csv(&[row()]);
        assert_eq!(
            text,
            "tile_id,tile_x,tile_y,xmin,ymin,xmax,ymax,pixels,mask\n\
             X0058_Y0056,58,56,4196026.25,2864919.5,4226026.25,2894919.5,1234,X0058_Y0056.mask.tif\n"
        );
        assert_eq!(parse_tiles_csv(&text).unwrap(), vec![row()]);
    }

    #[test]
    fn bad_files_are_named_by_line_and_field() {
        assert_eq!(parse_tiles_csv("a,b\n"), Err(TilesCsvError::BadHeader));
        let text = format!("{TILES_CSV_HEADER}\nX0058_Y0056,58,56,1,2,3\n");
        assert_eq!(
            parse_tiles_csv(&text),
            Err(TilesCsvError::FieldCount { line: 2, found: 6 })
        );
        let text = format!("{TILES_CSV_HEADER}\nX0058_Y0056,58,56,1,2,3,4,many,m.tif\n");
        assert_eq!(
            parse_tiles_csv(&text).unwrap_err().to_string(),
            "line 2: bad pixels 'many'"
        );
    }
}
