//! Cloud-Optimised GeoTIFFs through GDAL's COG driver, and raster category names (which the gdal
//! crate does not wrap).
//!
//! GeoTIFF has no tag for category names: GDAL keeps them in a `.aux.xml` file beside the TIFF, so a
//! class raster is the pair `name.tif` + `name.tif.aux.xml`.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::path::Path;

use gdal::raster::{RasterBand, RasterCreationOptions};
use gdal::{Dataset, DriverManager};

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
    type Err = treesits_core::choice::UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "mode" => Ok(OverviewResampling::Mode),
            "nearest" => Ok(OverviewResampling::Nearest),
            "average" => Ok(OverviewResampling::Average),
            _ => Err(treesits_core::choice::UnknownChoice::new(
                "resampling",
                s,
                "mode, nearest or average",
            )),
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

/// Writes `src` (usually a mosaic VRT) as a COG at `out`. A block GDAL failed to write (disk full) is
/// an error ([`crate::error::checked_write`]), not a COG with holes.
///
/// Nodata, scale, offset, descriptions and the colour table go along in either case; category names
/// (which GDAL keeps in `out.aux.xml`) do only without `target_epsg` — GDAL's warper behind
/// `TARGET_SRS` drops them — so they are copied over here.
pub fn write_cog(src: &Path, out: &Path, options: &CogOptions) -> gdal::errors::Result<()> {
    crate::error::checked_write(|| {
        let ds = Dataset::open(src)?;
        let driver = DriverManager::get_driver_by_name("COG")?;
        let opts = options.creation_options();
        let co = RasterCreationOptions::from_iter(opts.iter().map(String::as_str));
        let cog = ds.create_copy(&driver, out, &co)?;
        if options.target_epsg.is_some() {
            copy_category_names(&ds, &cog)?;
        }
        cog.close()
    })
}

/// Gives each band of `to` the category names of the same band of `from`, where `to` has none. On a
/// GeoTIFF they go into its `.aux.xml`: the TIFF itself (a COG's layout) is not touched.
fn copy_category_names(from: &Dataset, to: &Dataset) -> gdal::errors::Result<()> {
    for b in 1..=from.raster_count().min(to.raster_count()) {
        let names = read_category_names(&from.rasterband(b)?);
        let mut band = to.rasterband(b)?;
        if !names.is_empty() && read_category_names(&band).is_empty() {
            set_category_names(&mut band, &names)?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_reprojected_cog_keeps_category_names_colours_and_scale() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.tif");
        let gtiff = DriverManager::get_driver_by_name("GTiff").unwrap();
        let mut ds = gtiff.create_with_band_type::<u8, _>(&src, 32, 32, 1).unwrap();
        ds.set_geo_transform(&[4_000_000.0, 10.0, 0.0, 3_000_000.0, 0.0, -10.0])
            .unwrap();
        ds.set_spatial_ref(&gdal::spatial_ref::SpatialRef::from_epsg(3035).unwrap())
            .unwrap();
        {
            let mut band = ds.rasterband(1).unwrap();
            let names = vec!["spruce".to_string(), String::new(), "oak".to_string()];
            set_category_names(&mut band, &names).unwrap();
            let mut t = gdal::raster::ColorTable::new(gdal::raster::PaletteInterpretation::Rgba);
            t.set_color_entry(2, &gdal::raster::ColorEntry::rgba(200, 80, 40, 255));
            band.set_color_table(&t);
            band.set_scale(0.5).unwrap();
        }
        ds.close().unwrap();
        let out = dir.path().join("web.tif");
        let o = CogOptions {
            overview_resampling: OverviewResampling::Nearest,
            threads: 1,
            target_epsg: Some(3857),
        };
        write_cog(&src, &out, &o).unwrap();
        let web = Dataset::open(&out).unwrap();
        assert_eq!(web.spatial_ref().unwrap().auth_code().unwrap(), 3857);
        let band = web.rasterband(1).unwrap();
        assert_eq!(read_category_names(&band), ["spruce", "", "oak"]);
        let e = band.color_table().unwrap().entry_as_rgb(2).unwrap();
        assert_eq!([e.r, e.g, e.b], [200, 80, 40]);
        assert_eq!(band.scale(), Some(0.5));
    }
}
