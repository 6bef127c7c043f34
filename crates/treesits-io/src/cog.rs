//! Cloud-Optimised GeoTIFFs through GDAL's COG driver, and the class styling (colour table, category
//! names) that class rasters carry.
//!
//! GeoTIFF has no tag for category names: GDAL keeps them in a `.aux.xml` file beside the TIFF, so a
//! class raster is the pair `name.tif` + `name.tif.aux.xml`. The class table is also stored inside the
//! TIFF as the dataset metadata item [`CLASSES_METADATA_KEY`] (JSON), so the TIFF alone says what its
//! values mean.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::path::Path;

use gdal::raster::{
    ColorEntry, ColorInterpretation, ColorTable, PaletteInterpretation, RasterBand, RasterCreationOptions,
};
use gdal::{Dataset, DriverManager};
use treesits_core::species::SpeciesClass;

/// Dataset metadata item holding the class table as JSON (`[{"code":0,"name":"spruce","colour":[…]}…]`).
pub const CLASSES_METADATA_KEY: &str = "TREESITS_CLASSES";

/// How overviews of a raster are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverviewResampling {
    /// The most frequent value (class rasters: an overview pixel is a class that occurs under it).
    Mode,
    /// Nearest neighbour (class rasters, faster than mode).
    Nearest,
    /// The mean (probabilities).
    Average,
}

impl OverviewResampling {
    pub fn gdal_name(self) -> &'static str {
        match self {
            OverviewResampling::Mode => "MODE",
            OverviewResampling::Nearest => "NEAREST",
            OverviewResampling::Average => "AVERAGE",
        }
    }
}

impl std::str::FromStr for OverviewResampling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "mode" => Ok(OverviewResampling::Mode),
            "nearest" => Ok(OverviewResampling::Nearest),
            "average" => Ok(OverviewResampling::Average),
            _ => Err(format!("unknown resampling '{s}' (use mode or nearest)")),
        }
    }
}

/// What a COG is made with.
#[derive(Debug, Clone)]
pub struct CogOptions {
    pub overview_resampling: OverviewResampling,
    /// Threads for compression and overviews.
    pub threads: usize,
    /// Reproject to `EPSG:<code>` (nearest neighbour, so classes stay classes).
    pub target_epsg: Option<u32>,
}

impl CogOptions {
    /// The COG driver's creation options; `scripts/bench-mosaic` passes the same to `gdal_translate`.
    pub fn creation_options(&self) -> Vec<String> {
        let mut o = vec![
            "COMPRESS=DEFLATE".to_string(),
            "PREDICTOR=YES".to_string(),
            "BLOCKSIZE=512".to_string(),
            "BIGTIFF=IF_SAFER".to_string(),
            format!("OVERVIEW_RESAMPLING={}", self.overview_resampling.gdal_name()),
            format!("NUM_THREADS={}", self.threads.max(1)),
        ];
        if let Some(epsg) = self.target_epsg {
            o.push(format!("TARGET_SRS=EPSG:{epsg}"));
            o.push("RESAMPLING=NEAREST".to_string());
            o.push("ADD_ALPHA=NO".to_string());
        }
        o
    }
}

/// Writes `src` (usually a mosaic VRT) as a COG at `out`.
pub fn write_cog(src: &Path, out: &Path, options: &CogOptions) -> gdal::errors::Result<()> {
    let ds = Dataset::open(src)?;
    let driver = DriverManager::get_driver_by_name("COG")?;
    let opts = options.creation_options();
    let co = RasterCreationOptions::from_iter(opts.iter().map(String::as_str));
    let cog = ds.create_copy(&driver, out, &co)?;
    cog.close()?;
    Ok(())
}

/// The colour table of a class raster: each class's colour, everything else transparent black.
pub fn class_colour_table(classes: &[SpeciesClass]) -> ColorTable<'static> {
    let mut t = ColorTable::new(PaletteInterpretation::Rgba);
    for i in 0..=255u16 {
        t.set_color_entry(i, &ColorEntry::rgba(0, 0, 0, 0));
    }
    for c in classes {
        let [r, g, b] = c.colour;
        t.set_color_entry(
            u16::from(c.code),
            &ColorEntry::rgba(i16::from(r), i16::from(g), i16::from(b), 255),
        );
    }
    t
}

/// Category names indexed by value (up to the highest class code; gaps are empty strings).
pub fn category_names(classes: &[SpeciesClass]) -> Vec<String> {
    let n = classes.iter().map(|c| usize::from(c.code) + 1).max().unwrap_or(0);
    let mut names = vec![String::new(); n];
    for c in classes {
        names[usize::from(c.code)] = c.name.clone();
    }
    names
}

/// Gives a class band its colour table, palette interpretation and category names.
pub fn style_class_band(band: &mut RasterBand, classes: &[SpeciesClass]) -> gdal::errors::Result<()> {
    band.set_color_table(&class_colour_table(classes));
    band.set_color_interpretation(ColorInterpretation::PaletteIndex)?;
    set_category_names(band, &category_names(classes))
}

/// `GDALSetRasterCategoryNames` (the gdal crate has no wrapper).
pub fn set_category_names(band: &mut RasterBand, names: &[String]) -> gdal::errors::Result<()> {
    let c: Vec<CString> = names
        .iter()
        .map(|n| CString::new(n.replace('\0', "")).expect("no NUL left"))
        .collect();
    let mut ptrs: Vec<*mut std::os::raw::c_char> = c.iter().map(|s| s.as_ptr().cast_mut()).collect();
    ptrs.push(std::ptr::null_mut());
    // SAFETY: the band handle is valid while `band` lives; GDAL copies the NULL-terminated list.
    let rv = unsafe { gdal_sys::GDALSetRasterCategoryNames(band.c_rasterband(), ptrs.as_mut_ptr()) };
    if rv != gdal_sys::CPLErr::CE_None {
        return Err(gdal::errors::GdalError::CplError {
            class: rv,
            number: 0,
            msg: "GDALSetRasterCategoryNames failed".into(),
        });
    }
    Ok(())
}

/// `GDALGetRasterCategoryNames`: the band's category names, empty when it has none.
pub fn read_category_names(band: &RasterBand) -> Vec<String> {
    // SAFETY: GDAL returns a NULL-terminated list owned by the band (or NULL); we copy it at once.
    unsafe {
        let list = gdal_sys::GDALGetRasterCategoryNames(band.c_rasterband());
        let mut out = Vec::new();
        if list.is_null() {
            return out;
        }
        let mut i = 0;
        loop {
            let p = *list.add(i);
            if p.is_null() {
                break;
            }
            out.push(CStr::from_ptr(p).to_string_lossy().into_owned());
            i += 1;
        }
        out
    }
}

/// The class table as stored in [`CLASSES_METADATA_KEY`].
pub fn classes_json(classes: &[SpeciesClass]) -> String {
    serde_json::to_string(classes).expect("a class table serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use treesits_core::species::tree_species;

    #[test]
    fn class_table_json_reads_back_as_the_table() {
        let t = tree_species();
        let json = classes_json(&t);
        assert!(
            json.starts_with(r#"[{"code":0,"name":"spruce","colour":[31,94,49]}"#),
            "{json}"
        );
        assert_eq!(json.matches("\"code\"").count(), 10);
        let names = category_names(&t);
        assert_eq!(names.len(), 10);
        assert_eq!(names[6], "beech");
    }

    #[test]
    fn cog_options_follow_the_product() {
        let o = CogOptions {
            overview_resampling: OverviewResampling::Mode,
            threads: 3,
            target_epsg: Some(3857),
        };
        let v = o.creation_options();
        assert!(v.contains(&"OVERVIEW_RESAMPLING=MODE".to_string()));
        assert!(v.contains(&"NUM_THREADS=3".to_string()));
        assert!(v.contains(&"TARGET_SRS=EPSG:3857".to_string()));
        assert!(v.contains(&"RESAMPLING=NEAREST".to_string()));
    }
}
