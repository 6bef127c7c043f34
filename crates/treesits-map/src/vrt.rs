//! Mosaic VRTs of per-tile rasters on one FORCE grid, written as XML directly: every tile's place is
//! known from its id, so nothing needs opening, the georeferencing is the grid's exactly, and the
//! class styling (colour table, category names) goes into the VRT itself.

use treesits_core::species::SpeciesClass;
use treesits_core::{TileGrid, TileId};

use crate::provenance::Provenance;
use treesits_core::names::CLASSES_METADATA_KEY;
use treesits_core::species::{category_names, classes_json};

use crate::style::{class_palette, xml_escape as esc};

/// One band of a mosaic VRT.
#[derive(Debug, Clone)]
pub struct VrtBand<'a> {
    /// GDAL type name: `Byte` or `UInt16`.
    pub data_type: &'static str,
    pub nodata: f64,
    pub description: String,
    /// Band of the tile files this band reads.
    pub source_band: usize,
    /// Class rasters: palette and category names.
    pub classes: Option<&'a [SpeciesClass]>,
    /// (scale, offset) from stored to physical values (probability-like bands).
    pub scale_offset: Option<(f64, f64)>,
}

/// Per-tile files of one product.
#[derive(Debug, Clone)]
pub struct VrtTiles<'a> {
    pub grid: &'a TileGrid,
    /// Tile and its file name relative to the VRT.
    pub tiles: Vec<(TileId, String)>,
    /// Block size of the tile files (for the source properties).
    pub block: (usize, usize),
}

/// The rectangle of tiles the mosaic spans: (west-most x, north-most y, columns of tiles, rows of tiles).
fn tile_span(tiles: &[(TileId, String)]) -> (i32, i32, usize, usize) {
    let x0 = tiles.iter().map(|t| t.0.x).min().unwrap_or(0);
    let x1 = tiles.iter().map(|t| t.0.x).max().unwrap_or(0);
    let y0 = tiles.iter().map(|t| t.0.y).min().unwrap_or(0);
    let y1 = tiles.iter().map(|t| t.0.y).max().unwrap_or(0);
    (x0, y0, (x1 - x0 + 1) as usize, (y1 - y0 + 1) as usize)
}

/// The VRT XML of a mosaic; areas no tile covers read as each band's nodata.
pub fn mosaic_vrt(t: &VrtTiles, bands: &[VrtBand], metadata: &[(String, String)]) -> String {
    let grid = t.grid;
    let (tc, tr) = grid.tile_pixels;
    let (x0, y0, nx, ny) = tile_span(&t.tiles);
    let gt = grid.geotransform(TileId::new(x0, y0));
    let mut x = String::new();
    x.push_str(&format!(
        "<VRTDataset rasterXSize=\"{}\" rasterYSize=\"{}\">\n",
        nx * tc,
        ny * tr
    ));
    // No dataAxisToSRSAxisMapping: GDAL then takes the geotransform as (east, north) whatever axis
    // order the WKT declares (the LAEA WKT of FORCE cubes says northing first).
    x.push_str(&format!(
        "  <SRS>{}</SRS>\n",
        esc(&grid.definition.projection_wkt)
    ));
    x.push_str(&format!(
        "  <GeoTransform>{}, {}, {}, {}, {}, {}</GeoTransform>\n",
        gt[0], gt[1], gt[2], gt[3], gt[4], gt[5]
    ));
    if !metadata.is_empty() {
        x.push_str("  <Metadata>\n");
        for (k, v) in metadata {
            x.push_str(&format!("    <MDI key=\"{}\">{}</MDI>\n", esc(k), esc(v)));
        }
        x.push_str("  </Metadata>\n");
    }
    for (i, b) in bands.iter().enumerate() {
        x.push_str(&format!(
            "  <VRTRasterBand dataType=\"{}\" band=\"{}\">\n",
            b.data_type,
            i + 1
        ));
        x.push_str(&format!(
            "    <Description>{}</Description>\n",
            esc(&b.description)
        ));
        x.push_str(&format!("    <NoDataValue>{}</NoDataValue>\n", b.nodata));
        if let Some((scale, offset)) = b.scale_offset {
            x.push_str(&format!(
                "    <Offset>{offset:?}</Offset>\n    <Scale>{scale:?}</Scale>\n"
            ));
        }
        if let Some(classes) = b.classes {
            x.push_str("    <ColorInterp>Palette</ColorInterp>\n    <CategoryNames>\n");
            for n in category_names(classes) {
                x.push_str(&format!("      <Category>{}</Category>\n", esc(&n)));
            }
            x.push_str("    </CategoryNames>\n    <ColorTable>\n");
            // Up to the highest class code only: a GIS lists every entry as a class.
            for e in class_palette(classes) {
                x.push_str(&format!(
                    "      <Entry c1=\"{}\" c2=\"{}\" c3=\"{}\" c4=\"{}\"/>\n",
                    e[0], e[1], e[2], e[3]
                ));
            }
            x.push_str("    </ColorTable>\n");
        }
        for (tile, file) in &t.tiles {
            let xoff = (tile.x - x0) as usize * tc;
            let yoff = (tile.y - y0) as usize * tr;
            x.push_str(&format!(
                "    <SimpleSource>\n      <SourceFilename relativeToVRT=\"1\">{}</SourceFilename>\n      \
                 <SourceBand>{}</SourceBand>\n      <SourceProperties RasterXSize=\"{tc}\" RasterYSize=\"{tr}\" \
                 DataType=\"{}\" BlockXSize=\"{}\" BlockYSize=\"{}\"/>\n      \
                 <SrcRect xOff=\"0\" yOff=\"0\" xSize=\"{tc}\" ySize=\"{tr}\"/>\n      \
                 <DstRect xOff=\"{xoff}\" yOff=\"{yoff}\" xSize=\"{tc}\" ySize=\"{tr}\"/>\n    </SimpleSource>\n",
                esc(file),
                b.source_band,
                b.data_type,
                t.block.0,
                t.block.1
            ));
        }
        x.push_str("  </VRTRasterBand>\n");
    }
    x.push_str("</VRTDataset>\n");
    x
}

/// Metadata every mosaic carries: the class table as JSON and the provenance of its tiles.
pub fn class_metadata(classes: &[SpeciesClass], provenance: &Provenance) -> Vec<(String, String)> {
    let mut m = vec![(CLASSES_METADATA_KEY.to_string(), classes_json(classes))];
    m.extend(provenance.metadata());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use treesits_core::CubeDefinition;

    #[test]
    fn tiles_are_placed_by_their_ids_and_the_grid_gives_the_origin() {
        let def = CubeDefinition {
            projection_wkt: "LOCAL_CS[\"a & b\"]".into(),
            origin_geo: (0.0, 0.0),
            origin_map: (1000.0, 9000.0),
            tile_size: (300.0, 300.0),
            block_size: (300.0, 300.0),
        };
        let grid = TileGrid::new(def, 10.0).unwrap();
        let t = VrtTiles {
            grid: &grid,
            tiles: vec![
                (TileId::new(3, 5), "X0003_Y0005_prob.tif".into()),
                (TileId::new(4, 6), "X0004_Y0006_prob.tif".into()),
            ],
            block: (256, 256),
        };
        let band = VrtBand {
            data_type: "UInt16",
            nodata: 65535.0,
            description: "top probability".into(),
            source_band: 1,
            classes: None,
            scale_offset: Some((1e-4, 0.0)),
        };
        let x = mosaic_vrt(&t, &[band], &[]);
        assert!(
            x.contains("<Offset>0.0</Offset>\n    <Scale>0.0001</Scale>"),
            "{x}"
        );
        assert!(x.contains("rasterXSize=\"60\" rasterYSize=\"60\""), "{x}");
        assert!(
            x.contains("<GeoTransform>1900, 10, 0, 7500, 0, -10</GeoTransform>"),
            "{x}"
        );
        assert!(x.contains("<DstRect xOff=\"30\" yOff=\"30\""), "{x}");
        assert!(x.contains("a &amp; b"));
    }
}
