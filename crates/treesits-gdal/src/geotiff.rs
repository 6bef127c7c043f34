//! GeoTIFF creation in the layouts FORCE writes.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use gdal::raster::{GdalType, RasterCreationOptions};
use gdal::{Dataset, DriverManager};

/// How a GeoTIFF is laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TiffLayout {
    /// FORCE ≤ 3.7: LZW + horizontal predictor, band-interleaved, full-width strips of `rows` rows.
    Strips { rows: usize },
    /// FORCE ≥ 3.8: ZSTD + horizontal predictor, band-interleaved, square tiles of `size` pixels.
    Tiles { size: usize },
}

impl TiffLayout {
    /// GDAL creation options for this layout.
    pub fn creation_options(&self) -> Vec<String> {
        match *self {
            TiffLayout::Strips { rows } => vec![
                "COMPRESS=LZW".into(),
                "PREDICTOR=2".into(),
                "INTERLEAVE=BAND".into(),
                "TILED=NO".into(),
                format!("BLOCKYSIZE={rows}"),
            ],
            TiffLayout::Tiles { size } => vec![
                "COMPRESS=ZSTD".into(),
                "PREDICTOR=2".into(),
                "INTERLEAVE=BAND".into(),
                "TILED=YES".into(),
                format!("BLOCKXSIZE={size}"),
                format!("BLOCKYSIZE={size}"),
            ],
        }
    }

    /// The block shape (columns, rows) for an image `cols` wide.
    pub fn block_shape(&self, cols: usize) -> (usize, usize) {
        match *self {
            TiffLayout::Strips { rows } => (cols, rows),
            TiffLayout::Tiles { size } => (size, size),
        }
    }
}

/// The Level-2 layouts by their FORCE version names, for command lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForceLayout {
    /// `force37`: strips + LZW.
    Force37,
    /// `force38`: 256 × 256 tiles + ZSTD.
    Force38,
    /// `force39`: Cloud Optimized GeoTIFF (GDAL's COG driver), ZSTD + predictor, 256 × 256 blocks,
    /// overviews (average): FORCE ≥ 3.9's default Level-2 format.
    Force39,
}

impl FromStr for ForceLayout {
    type Err = treesits_core::choice::UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "force37" | "strips" => Ok(ForceLayout::Force37),
            "force38" | "tiles" => Ok(ForceLayout::Force38),
            "force39" | "cog" => Ok(ForceLayout::Force39),
            _ => Err(treesits_core::choice::UnknownChoice::new(
                "layout",
                s,
                "force37 (LZW strips), force38 (ZSTD 256x256 tiles) or force39 (COG: ZSTD 256x256 blocks, overviews)",
            )),
        }
    }
}

impl fmt::Display for ForceLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForceLayout::Force37 => "force37",
            ForceLayout::Force38 => "force38",
            ForceLayout::Force39 => "force39",
        })
    }
}

impl ForceLayout {
    /// The TIFF layout for a tile with the given strip height (used by the strip layout). A COG is
    /// written in this layout first and then copied into its final form ([`write_level2_cog`]).
    pub fn tiff_layout(self, strip_rows: usize) -> TiffLayout {
        match self {
            ForceLayout::Force37 => TiffLayout::Strips { rows: strip_rows },
            ForceLayout::Force38 | ForceLayout::Force39 => TiffLayout::Tiles { size: 256 },
        }
    }

    /// Whether files of this layout are COGs (written through [`write_level2_cog`]).
    pub fn is_cog(self) -> bool {
        self == ForceLayout::Force39
    }
}

/// The COG driver's creation options FORCE ≥ 3.9 uses for Level-2 files. `INTERLEAVE=TILE` (one
/// block per band) needs GDAL ≥ 3.11; older GDAL writes pixel-interleaved blocks.
pub fn level2_cog_creation_options() -> Vec<String> {
    let mut o: Vec<String> = [
        "COMPRESS=ZSTD",
        "PREDICTOR=YES",
        "BLOCKSIZE=256",
        "BIGTIFF=YES",
        "OVERVIEW_RESAMPLING=AVERAGE",
    ]
    .map(String::from)
    .to_vec();
    let version: u32 = gdal::version::version_info("VERSION_NUM").parse().unwrap_or(0);
    if version >= 3_110_000 {
        o.push("INTERLEAVE=TILE".into());
    }
    o
}

/// Copies `src` into a Cloud Optimized GeoTIFF at `path` (overviews computed by the driver).
pub fn write_level2_cog(src: &Dataset, path: &Path) -> gdal::errors::Result<Dataset> {
    let driver = DriverManager::get_driver_by_name("COG")?;
    let opts = level2_cog_creation_options();
    let options = RasterCreationOptions::from_iter(opts.iter().map(String::as_str));
    src.create_copy(&driver, path, &options)
}

/// Everything needed to create a georeferenced GeoTIFF.
#[derive(Debug, Clone)]
pub struct GeoTiffSpec<'a> {
    pub cols: usize,
    pub rows: usize,
    pub bands: usize,
    pub layout: TiffLayout,
    pub geotransform: [f64; 6],
    pub projection_wkt: &'a str,
}

impl<'a> GeoTiffSpec<'a> {
    /// A raster exactly on one cube tile's grid.
    pub fn tile(
        grid: &'a treesits_core::TileGrid,
        tile: treesits_core::TileId,
        bands: usize,
        layout: TiffLayout,
    ) -> GeoTiffSpec<'a> {
        GeoTiffSpec {
            cols: grid.tile_pixels.0,
            rows: grid.tile_pixels.1,
            bands,
            layout,
            geotransform: grid.geotransform(tile),
            projection_wkt: &grid.definition.projection_wkt,
        }
    }

    /// Creates the file with band type `T`, georeferenced, ready for writing.
    pub fn create<T: GdalType>(&self, path: &Path) -> gdal::errors::Result<Dataset> {
        let driver = DriverManager::get_driver_by_name("GTiff")?;
        let opts = self.layout.creation_options();
        let options = RasterCreationOptions::from_iter(opts.iter().map(String::as_str));
        let mut ds = driver
            .create_with_band_type_with_options::<T, _>(path, self.cols, self.rows, self.bands, &options)?;
        ds.set_geo_transform(&self.geotransform)?;
        ds.set_projection(self.projection_wkt)?;
        Ok(ds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_give_force_block_shapes() {
        let dir = tempfile::tempdir().unwrap();
        for (layout, block) in [
            (TiffLayout::Strips { rows: 30 }, (300, 30)),
            (TiffLayout::Tiles { size: 256 }, (256, 256)),
        ] {
            let path = dir.path().join("t.tif");
            let spec = GeoTiffSpec {
                cols: 300,
                rows: 300,
                bands: 2,
                layout,
                geotransform: [0.0, 10.0, 0.0, 3000.0, 0.0, -10.0],
                projection_wkt: "",
            };
            drop(spec.create::<i16>(&path).unwrap());
            let ds = Dataset::open(&path).unwrap();
            assert_eq!(ds.rasterband(1).unwrap().block_size(), block);
            assert_eq!(ds.raster_count(), 2);
            assert_eq!(ds.geo_transform().unwrap(), spec.geotransform);
            assert_eq!(layout.block_shape(300), block);
        }
    }

    #[test]
    fn cogs_have_256_pixel_blocks_and_overviews() {
        let dir = tempfile::tempdir().unwrap();
        let spec = GeoTiffSpec {
            cols: 600,
            rows: 600,
            bands: 2,
            layout: ForceLayout::Force39.tiff_layout(60),
            geotransform: [0.0, 10.0, 0.0, 6000.0, 0.0, -10.0],
            projection_wkt: "",
        };
        let src = spec.create::<i16>(&dir.path().join("src.tif")).unwrap();
        let cog = dir.path().join("cog.tif");
        drop(write_level2_cog(&src, &cog).unwrap());
        let ds = Dataset::open(&cog).unwrap();
        use gdal::Metadata;
        assert_eq!(
            ds.metadata_item("LAYOUT", "IMAGE_STRUCTURE").as_deref(),
            Some("COG")
        );
        assert_eq!(
            ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE").as_deref(),
            Some("ZSTD")
        );
        let band = ds.rasterband(2).unwrap();
        assert_eq!(band.block_size(), (256, 256));
        assert!(band.overview_count().unwrap() >= 1);
        assert!(ForceLayout::Force39.is_cog() && !ForceLayout::Force38.is_cog());
        assert_eq!("cog".parse::<ForceLayout>().unwrap(), ForceLayout::Force39);
        assert_eq!(ForceLayout::Force39.to_string(), "force39");
    }
}
