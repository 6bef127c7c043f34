//! The FORCE tiling grid: `datacube-definition.prj`, tile ids, and tile ↔ extent ↔ pixel-window math.
//!
//! FORCE tiles are numbered from the grid origin (upper-left corner): X grows eastward, Y grows
//! **southward**: `X = floor((x − X0) / tile_x)`, `Y = floor((Y0 − y) / tile_y)`.

use std::fmt;
use std::str::FromStr;

/// Which of FORCE's two `datacube-definition.prj` forms a definition was read from or is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrjForm {
    /// FORCE ≤ 3.7: seven bare lines (WKT, origin lon, origin lat, origin x, origin y, tile size, block size).
    Lines,
    /// FORCE ≥ 3.8: `KEY = value` lines (`PROJECTION = …`, `ORIGIN_GEO_X = …`, …).
    Tagged,
}

impl FromStr for PrjForm {
    type Err = crate::choice::UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lines" | "old" | "7-line" => Ok(PrjForm::Lines),
            "tagged" | "new" => Ok(PrjForm::Tagged),
            _ => Err(crate::choice::UnknownChoice::new(
                ".prj form",
                s,
                "'lines' (FORCE <= 3.7) or 'tagged' (FORCE >= 3.8)",
            )),
        }
    }
}

/// The contents of a cube's `datacube-definition.prj`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CubeDefinition {
    /// Projection of the cube as OGC WKT.
    pub projection_wkt: String,
    /// Grid origin in geographic coordinates (longitude, latitude), degrees.
    pub origin_geo: (f64, f64),
    /// Grid origin (upper-left corner of tile X0000_Y0000) in map units (x, y).
    pub origin_map: (f64, f64),
    /// Tile size in map units (x, y).
    pub tile_size: (f64, f64),
    /// Processing block size in map units (x, y); the old form has only a block height, its width
    /// is the tile width (full-width strips).
    pub block_size: (f64, f64),
}

/// Why a `datacube-definition.prj` could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrjError {
    #[error("the file is empty")]
    Empty,
    #[error(
        "the projection WKT is truncated (its brackets do not close); FORCE 3.9.02 wrote truncated \
         datacube-definition.prj files: regenerate it with a fixed FORCE or paste the full WKT of a tile's GeoTIFF"
    )]
    TruncatedWkt,
    #[error(
        "expected 7 lines (WKT, origin lon, origin lat, origin x, origin y, tile size, block size), found {found}"
    )]
    MissingLines { found: usize },
    #[error(
        "missing key {key} (the tagged form needs PROJECTION, ORIGIN_GEO_X/Y, ORIGIN_MAP_X/Y, TILE_SIZE_X/Y)"
    )]
    MissingKey { key: &'static str },
    #[error("{what} is not a number: '{value}'")]
    BadNumber { what: String, value: String },
    #[error("{what} must be positive, got {value}")]
    NotPositive { what: String, value: f64 },
}

fn brackets_balanced(wkt: &str) -> bool {
    let mut depth = 0i64;
    for c in wkt.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0 && wkt.trim_end().ends_with([']', ')'])
}

fn number(what: &str, value: &str) -> Result<f64, PrjError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| PrjError::BadNumber {
            what: what.to_string(),
            value: value.trim().to_string(),
        })
}

fn positive(what: &str, value: f64) -> Result<f64, PrjError> {
    if value > 0.0 {
        Ok(value)
    } else {
        Err(PrjError::NotPositive {
            what: what.to_string(),
            value,
        })
    }
}

impl CubeDefinition {
    /// Parses either form of `datacube-definition.prj`.
    pub fn parse(text: &str) -> Result<CubeDefinition, PrjError> {
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let first = lines.first().ok_or(PrjError::Empty)?;
        if first.starts_with("PROJECTION") && first.contains('=') {
            Self::parse_tagged(&lines)
        } else {
            Self::parse_lines(&lines)
        }
    }

    fn parse_lines(lines: &[&str]) -> Result<CubeDefinition, PrjError> {
        let wkt = lines[0];
        if !brackets_balanced(wkt) {
            return Err(PrjError::TruncatedWkt);
        }
        if lines.len() < 7 {
            return Err(PrjError::MissingLines { found: lines.len() });
        }
        let names = [
            "origin lon (line 2)",
            "origin lat (line 3)",
            "origin x (line 4)",
            "origin y (line 5)",
        ];
        let mut v = [0.0; 4];
        for (i, name) in names.iter().enumerate() {
            v[i] = number(name, lines[i + 1])?;
        }
        let tile = positive("tile size (line 6)", number("tile size (line 6)", lines[5])?)?;
        let block = positive("block size (line 7)", number("block size (line 7)", lines[6])?)?;
        Ok(CubeDefinition {
            projection_wkt: wkt.to_string(),
            origin_geo: (v[0], v[1]),
            origin_map: (v[2], v[3]),
            tile_size: (tile, tile),
            block_size: (tile, block),
        })
    }

    fn parse_tagged(lines: &[&str]) -> Result<CubeDefinition, PrjError> {
        let get = |key: &'static str| -> Option<&str> {
            lines.iter().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim())
            })
        };
        let need = |key: &'static str| get(key).ok_or(PrjError::MissingKey { key });
        let wkt = need("PROJECTION")?;
        if !brackets_balanced(wkt) {
            return Err(PrjError::TruncatedWkt);
        }
        let num = |key: &'static str| -> Result<f64, PrjError> { number(key, need(key)?) };
        let tile_x = positive("TILE_SIZE_X", num("TILE_SIZE_X")?)?;
        let tile_y = positive("TILE_SIZE_Y", num("TILE_SIZE_Y")?)?;
        // Block sizes are optional in the tagged form; without them a block is the whole tile.
        let block_x = match get("BLOCK_SIZE_X") {
            Some(v) => positive("BLOCK_SIZE_X", number("BLOCK_SIZE_X", v)?)?,
            None => tile_x,
        };
        let block_y = match get("BLOCK_SIZE_Y") {
            Some(v) => positive("BLOCK_SIZE_Y", number("BLOCK_SIZE_Y", v)?)?,
            None => tile_y,
        };
        Ok(CubeDefinition {
            projection_wkt: wkt.to_string(),
            origin_geo: (num("ORIGIN_GEO_X")?, num("ORIGIN_GEO_Y")?),
            origin_map: (num("ORIGIN_MAP_X")?, num("ORIGIN_MAP_Y")?),
            tile_size: (tile_x, tile_y),
            block_size: (block_x, block_y),
        })
    }

    /// Writes the definition in the given form (the old form needs square tiles; its block size is the
    /// block height).
    pub fn to_prj(&self, form: PrjForm) -> String {
        match form {
            PrjForm::Lines => format!(
                "{}\n{:.6}\n{:.6}\n{:.6}\n{:.6}\n{:.6}\n{:.6}\n",
                self.projection_wkt,
                self.origin_geo.0,
                self.origin_geo.1,
                self.origin_map.0,
                self.origin_map.1,
                self.tile_size.0,
                self.block_size.1
            ),
            PrjForm::Tagged => format!(
                "PROJECTION = {}\nORIGIN_GEO_X = {:.6}\nORIGIN_GEO_Y = {:.6}\nORIGIN_MAP_X = {:.6}\n\
                 ORIGIN_MAP_Y = {:.6}\nTILE_SIZE_X = {:.6}\nTILE_SIZE_Y = {:.6}\nBLOCK_SIZE_X = {:.6}\n\
                 BLOCK_SIZE_Y = {:.6}\n",
                self.projection_wkt,
                self.origin_geo.0,
                self.origin_geo.1,
                self.origin_map.0,
                self.origin_map.1,
                self.tile_size.0,
                self.tile_size.1,
                self.block_size.0,
                self.block_size.1
            ),
        }
    }

    /// The tile that holds map coordinate (x, y). A point on a tile's west or north edge belongs to
    /// that tile.
    pub fn tile_of(&self, x: f64, y: f64) -> TileId {
        TileId {
            x: ((x - self.origin_map.0) / self.tile_size.0).floor() as i32,
            y: ((self.origin_map.1 - y) / self.tile_size.1).floor() as i32,
        }
    }

    /// The tile's extent in map units.
    pub fn tile_extent(&self, tile: TileId) -> Extent {
        let xmin = self.origin_map.0 + f64::from(tile.x) * self.tile_size.0;
        let ymax = self.origin_map.1 - f64::from(tile.y) * self.tile_size.1;
        Extent {
            xmin,
            ymin: ymax - self.tile_size.1,
            xmax: xmin + self.tile_size.0,
            ymax,
        }
    }

    /// All tiles that overlap the (half-open) extent, row by row from the north-west.
    pub fn tiles_overlapping(&self, e: &Extent) -> Vec<TileId> {
        let nw = self.tile_of(e.xmin, e.ymax);
        // The east and south edges are exclusive: step back a hair so a tile-aligned extent does not
        // pull in the neighbour it only touches.
        let eps_x = self.tile_size.0 * 1e-9;
        let eps_y = self.tile_size.1 * 1e-9;
        let se = self.tile_of(e.xmax - eps_x, e.ymin + eps_y);
        let mut tiles = Vec::new();
        for y in nw.y..=se.y {
            for x in nw.x..=se.x {
                tiles.push(TileId { x, y });
            }
        }
        tiles
    }

    /// The pixel grid of this cube at a resolution (map units per pixel).
    pub fn grid(&self, resolution: f64) -> Result<TileGrid, GridError> {
        TileGrid::new(self.clone(), resolution)
    }
}

/// A FORCE tile id, `X0058_Y0056`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TileId {
    pub x: i32,
    pub y: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tile id '{0}': expected Xdddd_Ydddd, e.g. X0058_Y0056")]
pub struct TileIdError(pub String);

impl TileId {
    pub fn new(x: i32, y: i32) -> TileId {
        TileId { x, y }
    }
}

impl FromStr for TileId {
    type Err = TileIdError;
    fn from_str(s: &str) -> Result<TileId, TileIdError> {
        let err = || TileIdError(s.to_string());
        let (xs, ys) = s.split_once('_').ok_or_else(err)?;
        let part = |p: &str, prefix: char| -> Option<i32> {
            let digits = p.strip_prefix(prefix)?;
            let body = digits.strip_prefix('-').unwrap_or(digits);
            if digits.len() != 4 || body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        };
        Ok(TileId {
            x: part(xs, 'X').ok_or_else(err)?,
            y: part(ys, 'Y').ok_or_else(err)?,
        })
    }
}

impl fmt::Display for TileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "X{:04}_Y{:04}", self.x, self.y)
    }
}

impl serde::Serialize for TileId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TileId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TileId, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// An axis-aligned extent in map units.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Extent {
    pub xmin: f64,
    pub ymin: f64,
    pub xmax: f64,
    pub ymax: f64,
}

impl Extent {
    pub fn intersection(&self, o: &Extent) -> Option<Extent> {
        let e = Extent {
            xmin: self.xmin.max(o.xmin),
            ymin: self.ymin.max(o.ymin),
            xmax: self.xmax.min(o.xmax),
            ymax: self.ymax.min(o.ymax),
        };
        (e.xmin < e.xmax && e.ymin < e.ymax).then_some(e)
    }
    pub fn width(&self) -> f64 {
        self.xmax - self.xmin
    }
    pub fn height(&self) -> f64 {
        self.ymax - self.ymin
    }
}

/// A rectangle of pixels inside a tile: rows grow southward, columns eastward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PixelWindow {
    pub row: usize,
    pub col: usize,
    pub rows: usize,
    pub cols: usize,
}

impl PixelWindow {
    /// The window of `rows` × `cols` pixels whose top-left pixel is (`row`, `col`).
    pub const fn new(row: usize, col: usize, rows: usize, cols: usize) -> PixelWindow {
        PixelWindow { row, col, rows, cols }
    }

    pub fn len(&self) -> usize {
        self.rows * self.cols
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GridError {
    #[error("resolution must be positive, got {0}")]
    BadResolution(f64),
    #[error("the tile size {tile} is not a whole number of {resolution} pixels")]
    NotDivisible { tile: f64, resolution: f64 },
}

/// The cube's tiles at one pixel size.
#[derive(Debug, Clone, PartialEq)]
pub struct TileGrid {
    pub definition: CubeDefinition,
    pub resolution: f64,
    /// Pixels per tile (columns, rows).
    pub tile_pixels: (usize, usize),
    /// Rows per processing block (the old FORCE strip height).
    pub block_rows: usize,
}

fn whole(tile: f64, resolution: f64) -> Result<usize, GridError> {
    let n = tile / resolution;
    if (n - n.round()).abs() > 1e-6 || n.round() < 1.0 {
        return Err(GridError::NotDivisible { tile, resolution });
    }
    Ok(n.round() as usize)
}

impl TileGrid {
    pub fn new(definition: CubeDefinition, resolution: f64) -> Result<TileGrid, GridError> {
        if !(resolution > 0.0 && resolution.is_finite()) {
            return Err(GridError::BadResolution(resolution));
        }
        let cols = whole(definition.tile_size.0, resolution)?;
        let rows = whole(definition.tile_size.1, resolution)?;
        let block_rows = whole(definition.block_size.1, resolution)
            .unwrap_or(rows)
            .clamp(1, rows);
        Ok(TileGrid {
            definition,
            resolution,
            tile_pixels: (cols, rows),
            block_rows,
        })
    }

    /// GDAL geotransform of a tile: `[xmin, res, 0, ymax, 0, -res]`.
    pub fn geotransform(&self, tile: TileId) -> [f64; 6] {
        let e = self.definition.tile_extent(tile);
        [e.xmin, self.resolution, 0.0, e.ymax, 0.0, -self.resolution]
    }

    /// Map coordinates of the centre of pixel (row, col) of a tile.
    pub fn pixel_centre(&self, tile: TileId, row: usize, col: usize) -> (f64, f64) {
        let e = self.definition.tile_extent(tile);
        (
            e.xmin + (col as f64 + 0.5) * self.resolution,
            e.ymax - (row as f64 + 0.5) * self.resolution,
        )
    }

    /// The tile and pixel (row, col) that hold map coordinate (x, y).
    pub fn pixel_of(&self, x: f64, y: f64) -> (TileId, usize, usize) {
        let tile = self.definition.tile_of(x, y);
        let e = self.definition.tile_extent(tile);
        let col = (((x - e.xmin) / self.resolution).floor() as usize).min(self.tile_pixels.0 - 1);
        let row = (((e.ymax - y) / self.resolution).floor() as usize).min(self.tile_pixels.1 - 1);
        (tile, row, col)
    }

    /// The whole tile as a window.
    pub fn tile_window(&self) -> PixelWindow {
        PixelWindow {
            row: 0,
            col: 0,
            rows: self.tile_pixels.1,
            cols: self.tile_pixels.0,
        }
    }

    /// The pixels of a tile whose centres fall inside the extent, or `None` if there are none.
    pub fn window_of(&self, tile: TileId, e: &Extent) -> Option<PixelWindow> {
        let t = self.definition.tile_extent(tile);
        let r = self.resolution;
        let c0 = ((e.xmin - t.xmin) / r - 0.5).ceil().max(0.0);
        let c1 = ((e.xmax - t.xmin) / r - 0.5)
            .ceil()
            .min(self.tile_pixels.0 as f64);
        let r0 = ((t.ymax - e.ymax) / r - 0.5).ceil().max(0.0);
        let r1 = ((t.ymax - e.ymin) / r - 0.5)
            .ceil()
            .min(self.tile_pixels.1 as f64);
        (c1 > c0 && r1 > r0).then_some(PixelWindow {
            row: r0 as usize,
            col: c0 as usize,
            rows: (r1 - r0) as usize,
            cols: (c1 - c0) as usize,
        })
    }

    /// The row bands `[row, row + block_rows)` that cover a tile, the last one possibly shorter.
    pub fn row_blocks(&self, block_rows: usize) -> impl Iterator<Item = PixelWindow> + '_ {
        let (cols, rows) = self.tile_pixels;
        let step = block_rows.max(1);
        (0..rows).step_by(step).map(move |row| PixelWindow {
            row,
            col: 0,
            rows: step.min(rows - row),
            cols,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WKT: &str = r#"PROJCS["ETRS89 / LAEA Europe",GEOGCS["ETRS89",DATUM["European_Terrestrial_Reference_System_1989",SPHEROID["GRS 1980",6378137,298.257222101]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Lambert_Azimuthal_Equal_Area"],PARAMETER["latitude_of_center",52],PARAMETER["longitude_of_center",10],PARAMETER["false_easting",4321000],PARAMETER["false_northing",3210000],UNIT["metre",1],AUTHORITY["EPSG","3035"]]"#;

    fn germany() -> CubeDefinition {
        CubeDefinition {
            projection_wkt: WKT.to_string(),
            origin_geo: (-25.0, 60.0),
            origin_map: (2_456_026.25, 4_574_919.5),
            tile_size: (30_000.0, 30_000.0),
            block_size: (30_000.0, 3_000.0),
        }
    }

    #[test]
    fn parses_the_seven_line_form() {
        let text = format!(
            "{WKT}\n-25.000000\n60.000000\n2456026.250000\n4574919.500000\n30000.000000\n3000.000000\n"
        );
        let d = CubeDefinition::parse(&text).unwrap();
        assert_eq!(d, germany());
    }

    #[test]
    fn parses_the_tagged_form_without_block_size() {
        let text = format!(
            "PROJECTION = {WKT}\nORIGIN_GEO_X = -25.000000\nORIGIN_GEO_Y = 60.000000\n\
             ORIGIN_MAP_X = 2456026.250000\nORIGIN_MAP_Y = 4574919.500000\nTILE_SIZE_X = 30000.000000\n\
             TILE_SIZE_Y = 30000.000000\n"
        );
        let d = CubeDefinition::parse(&text).unwrap();
        assert_eq!(d.origin_map, (2_456_026.25, 4_574_919.5));
        assert_eq!(d.tile_size, (30_000.0, 30_000.0));
        assert_eq!(d.block_size, (30_000.0, 30_000.0));
        assert_eq!(d.projection_wkt, WKT);
    }

    #[test]
    fn both_forms_round_trip() {
        let d = germany();
        assert_eq!(CubeDefinition::parse(&d.to_prj(PrjForm::Lines)).unwrap(), d);
        assert_eq!(CubeDefinition::parse(&d.to_prj(PrjForm::Tagged)).unwrap(), d);
    }

    #[test]
    fn truncated_wkt_is_named_as_such() {
        let cut = &WKT[..200];
        let text = format!("{cut}\n-25\n60\n2456026.25\n4574919.5\n30000\n3000\n");
        let e = CubeDefinition::parse(&text).unwrap_err();
        assert_eq!(e, PrjError::TruncatedWkt);
        assert!(e.to_string().contains("FORCE 3.9.02"));
        let tagged = format!("PROJECTION = {cut}\nORIGIN_GEO_X = -25\n");
        assert_eq!(
            CubeDefinition::parse(&tagged).unwrap_err(),
            PrjError::TruncatedWkt
        );
    }

    #[test]
    fn missing_lines_and_keys_are_reported() {
        let text = format!("{WKT}\n-25\n60\n2456026.25\n");
        assert_eq!(
            CubeDefinition::parse(&text).unwrap_err(),
            PrjError::MissingLines { found: 4 }
        );
        let tagged = format!("PROJECTION = {WKT}\nORIGIN_GEO_X = -25\nORIGIN_GEO_Y = 60\nORIGIN_MAP_X = 1\n");
        assert_eq!(
            CubeDefinition::parse(&tagged).unwrap_err(),
            PrjError::MissingKey { key: "TILE_SIZE_X" }
        );
        assert_eq!(CubeDefinition::parse("\n\n").unwrap_err(), PrjError::Empty);
        let bad = format!("{WKT}\n-25\nsixty\n2456026.25\n4574919.5\n30000\n3000\n");
        assert_eq!(
            CubeDefinition::parse(&bad).unwrap_err().to_string(),
            "origin lat (line 3) is not a number: 'sixty'"
        );
    }

    #[test]
    fn tile_ids_parse_and_format() {
        let t: TileId = "X0058_Y0056".parse().unwrap();
        assert_eq!(t, TileId::new(58, 56));
        assert_eq!(t.to_string(), "X0058_Y0056");
        assert_eq!("X-001_Y0002".parse::<TileId>().unwrap(), TileId::new(-1, 2));
        for bad in [
            "X58_Y56",
            "Y0058_X0056",
            "X0058Y0056",
            "X00a8_Y0056",
            "X0058_Y00567",
            "",
        ] {
            let e = bad.parse::<TileId>().unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("invalid tile id '{bad}': expected Xdddd_Ydddd, e.g. X0058_Y0056")
            );
        }
    }

    #[test]
    fn tile_of_and_extent_agree_with_known_german_tile() {
        let d = germany();
        // Tile X0069_Y0043 of the German cube.
        let e = d.tile_extent(TileId::new(69, 43));
        assert_eq!(e.xmin, 2_456_026.25 + 69.0 * 30_000.0);
        assert_eq!(e.ymax, 4_574_919.5 - 43.0 * 30_000.0);
        assert_eq!(e.ymin, e.ymax - 30_000.0);
        // Y grows southward: the tile south of it has a larger Y index.
        assert_eq!(d.tile_of(e.xmin + 1.0, e.ymin - 1.0), TileId::new(69, 44));
        assert_eq!(d.tile_of(e.xmin, e.ymax), TileId::new(69, 43));
        assert_eq!(d.tile_of(e.xmin - 0.01, e.ymax - 0.01), TileId::new(68, 43));
        assert_eq!(d.tile_of(e.xmin + 0.01, e.ymax + 0.01), TileId::new(69, 42));
    }

    #[test]
    fn tiles_overlapping_excludes_touching_neighbours() {
        let d = germany();
        let e = d.tile_extent(TileId::new(69, 43));
        assert_eq!(d.tiles_overlapping(&e), vec![TileId::new(69, 43)]);
        let wider = Extent {
            xmin: e.xmin - 1.0,
            ..e
        };
        assert_eq!(
            d.tiles_overlapping(&wider),
            vec![TileId::new(68, 43), TileId::new(69, 43)]
        );
        let taller = Extent {
            ymin: e.ymin - 1.0,
            ..e
        };
        assert_eq!(
            d.tiles_overlapping(&taller),
            vec![TileId::new(69, 43), TileId::new(69, 44)]
        );
    }

    #[test]
    fn pixel_math_at_ten_metres() {
        let g = germany().grid(10.0).unwrap();
        assert_eq!(g.tile_pixels, (3000, 3000));
        assert_eq!(g.block_rows, 300);
        let t = TileId::new(69, 43);
        let gt = g.geotransform(t);
        assert_eq!(
            gt,
            [
                2_456_026.25 + 2_070_000.0,
                10.0,
                0.0,
                4_574_919.5 - 1_290_000.0,
                0.0,
                -10.0
            ]
        );
        let (x, y) = g.pixel_centre(t, 2, 7);
        assert_eq!((x, y), (gt[0] + 75.0, gt[3] - 25.0));
        assert_eq!(g.pixel_of(x, y), (t, 2, 7));
        assert_eq!(g.pixel_of(gt[0] + 29_999.0, gt[3] - 29_999.0), (t, 2999, 2999));
        assert!(germany().grid(7.0).is_err());
        assert!(germany().grid(0.0).is_err());
    }

    #[test]
    fn window_of_uses_pixel_centres() {
        let g = germany().grid(10.0).unwrap();
        let t = TileId::new(69, 43);
        let [x0, _, _, y0, _, _] = g.geotransform(t);
        // 100 m × 50 m aligned to the grid → 10 columns × 5 rows starting at row 3, col 4.
        let e = Extent {
            xmin: x0 + 40.0,
            xmax: x0 + 140.0,
            ymax: y0 - 30.0,
            ymin: y0 - 80.0,
        };
        assert_eq!(
            g.window_of(t, &e),
            Some(PixelWindow {
                row: 3,
                col: 4,
                rows: 5,
                cols: 10
            })
        );
        // Shifted by less than half a pixel, the same centres are covered.
        let e2 = Extent {
            xmin: e.xmin - 4.0,
            xmax: e.xmax + 4.0,
            ymin: e.ymin - 4.0,
            ymax: e.ymax + 4.0,
        };
        assert_eq!(g.window_of(t, &e2), g.window_of(t, &e));
        let outside = Extent {
            xmin: x0 - 100.0,
            xmax: x0 - 1.0,
            ymin: y0 - 100.0,
            ymax: y0,
        };
        assert_eq!(g.window_of(t, &outside), None);
    }

    #[test]
    fn row_blocks_cover_the_tile_once() {
        let g = germany().grid(10.0).unwrap();
        let blocks: Vec<_> = g.row_blocks(256).collect();
        assert_eq!(blocks.len(), 12);
        assert_eq!(blocks.iter().map(|b| b.rows).sum::<usize>(), 3000);
        assert_eq!(blocks.last().unwrap().rows, 3000 - 11 * 256);
    }
}
