//! Class styling of class rasters: colour table, palette interpretation, category names.

use gdal::raster::{ColorEntry, ColorInterpretation, ColorTable, PaletteInterpretation, RasterBand};
use treesits_core::species::{category_names, SpeciesClass};
use treesits_gdal::cog::set_category_names;

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

/// Gives a class band its colour table, palette interpretation and category names.
pub fn style_class_band(band: &mut RasterBand, classes: &[SpeciesClass]) -> gdal::errors::Result<()> {
    band.set_color_table(&class_colour_table(classes));
    band.set_color_interpretation(ColorInterpretation::PaletteIndex)?;
    set_category_names(band, &category_names(classes))
}
