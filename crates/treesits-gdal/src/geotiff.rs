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

/// The two layouts by their FORCE version names, for command lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForceLayout {
    /// `force37`: strips + LZW.
    Force37,
    /// `force38`: 256 × 256 tiles + ZSTD.
    Force38,
}

impl FromStr for ForceLayout {
    type Err = treesits_core::choice::UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "force37" | "strips" => Ok(ForceLayout::Force37),
            "force38" | "tiles" => Ok(ForceLayout::Force38),
            _ => Err(treesits_core::choice::UnknownChoice::new(
                "layout",
                s,
                "force37 (LZW strips) or force38 (ZSTD 256x256 tiles)",
            )),
        }
    }
}

impl fmt::Display for ForceLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForceLayout::Force37 => "force37",
            ForceLayout::Force38 => "force38",
        })
    }
}

impl ForceLayout {
    /// The TIFF layout for a tile with the given strip height (used by the strip layout).
    pub fn tiff_layout(self, strip_rows: usize) -> TiffLayout {
        match self {
            ForceLayout::Force37 => TiffLayout::Strips { rows: strip_rows },
            ForceLayout::Force38 => TiffLayout::Tiles { size: 256 },
        }
    }
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
}
