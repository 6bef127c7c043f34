//! How the map products look in GIS tools: the colour table and category names of class rasters,
//! the scale of probability bands, and the style files written beside every product — a QGIS style
//! (`.qml`, loaded by QGIS when it opens `<name>.tif` or `<name>.vrt` beside `<name>.qml`) and an OGC
//! SLD 1.0 (`.sld`, for GeoServer and other map servers).
//!
//! The colour table of a GeoTIFF always has 2^bits entries (the TIFF colour map tag is sized so, and
//! carries no alpha), so a GIS that lists the palette shows 256 entries for a Byte class tile or COG;
//! the style files list exactly the model's classes, and the VRTs' colour tables end at the highest
//! class code.

use std::path::Path;

use gdal::raster::{ColorEntry, ColorInterpretation, ColorTable, PaletteInterpretation, RasterBand};
use treesits_core::prediction::PROB_SCALE;
use treesits_core::species::{category_names, SpeciesClass};
use treesits_gdal::cog::set_category_names;

/// Scale of probability and uncertainty bands: the stored value is `round(p × 10000)`, so physical
/// value = stored × `PROBABILITY_SCALE` + [`PROBABILITY_OFFSET`].
pub const PROBABILITY_SCALE: f64 = 1.0 / PROB_SCALE as f64;
/// Offset of probability and uncertainty bands.
pub const PROBABILITY_OFFSET: f64 = 0.0;

/// The palette of a class raster as RGBA, indexed by value: entries 0 up to the highest class code,
/// each class in its colour (opaque), the codes that are no class transparent black. Values above it
/// (nodata 255) have no entry.
pub fn class_palette(classes: &[SpeciesClass]) -> Vec<[u8; 4]> {
    let n = classes.iter().map(|c| usize::from(c.code) + 1).max().unwrap_or(0);
    let mut entries = vec![[0u8; 4]; n];
    for c in classes {
        let [r, g, b] = c.colour;
        entries[usize::from(c.code)] = [r, g, b, 255];
    }
    entries
}

/// The colour table of a class raster: [`class_palette`] as a GDAL colour table.
pub fn class_colour_table(classes: &[SpeciesClass]) -> ColorTable<'static> {
    let mut t = ColorTable::new(PaletteInterpretation::Rgba);
    for (i, [r, g, b, a]) in class_palette(classes).into_iter().enumerate() {
        let e = ColorEntry::rgba(i16::from(r), i16::from(g), i16::from(b), i16::from(a));
        t.set_color_entry(i as u16, &e);
    }
    t
}

/// Gives a class band its colour table, palette interpretation and category names.
pub fn style_class_band(band: &mut RasterBand, classes: &[SpeciesClass]) -> gdal::errors::Result<()> {
    band.set_color_table(&class_colour_table(classes));
    band.set_color_interpretation(ColorInterpretation::PaletteIndex)?;
    set_category_names(band, &category_names(classes))
}

/// Gives a probability or uncertainty band its scale and offset, so GDAL and GIS tools read 0–1.
pub fn scale_probability_band(band: &mut RasterBand) -> gdal::errors::Result<()> {
    band.set_scale(PROBABILITY_SCALE)?;
    band.set_offset(PROBABILITY_OFFSET)
}

/// What a product's style shows.
#[derive(Debug, Clone, Copy)]
pub enum Style<'a> {
    /// A class raster: one palette entry per class.
    Classes(&'a [SpeciesClass]),
    /// A probability-like band (probability, uncertainty), shown as a colour ramp over 0–1 in
    /// physical units (the bands carry scale [`PROBABILITY_SCALE`]).
    Ramp { title: &'a str },
}

/// The colour ramp of probability-like bands: (value, RGB), light for 0, dark for 1.
pub const RAMP: [(f64, [u8; 3]); 3] = [
    (0.0, [255, 255, 204]),
    (0.5, [65, 182, 196]),
    (1.0, [12, 44, 132]),
];

/// XML text and attribute escaping.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // Characters XML 1.0 does not allow (control codes other than tab and newlines).
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The QGIS style (`.qml`) of a product.
pub fn qml(style: Style) -> String {
    let mut x = String::from(
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n\
         <qgis version=\"3.28.0\" styleCategories=\"Symbology\">\n  <pipe>\n",
    );
    match style {
        Style::Classes(classes) => {
            x.push_str(
                "    <rasterrenderer type=\"paletted\" band=\"1\" opacity=\"1\" alphaBand=\"-1\" nodataColor=\"\">\n\
                 \x20     <rasterTransparency/>\n      <colorPalette>\n",
            );
            for c in classes {
                x.push_str(&format!(
                    "        <paletteEntry value=\"{}\" color=\"{}\" alpha=\"255\" label=\"{}\"/>\n",
                    c.code,
                    hex(c.colour),
                    xml_escape(&c.name)
                ));
            }
            x.push_str("      </colorPalette>\n    </rasterrenderer>\n");
        }
        Style::Ramp { title } => {
            x.push_str(
                "    <rasterrenderer type=\"singlebandpseudocolor\" band=\"1\" opacity=\"1\" alphaBand=\"-1\" \
                 classificationMin=\"0\" classificationMax=\"1\" nodataColor=\"\">\n\
                 \x20     <rasterTransparency/>\n      <minMaxOrigin>\n        <limits>None</limits>\n        \
                 <extent>WholeRaster</extent>\n      </minMaxOrigin>\n      <rastershader>\n        \
                 <colorrampshader colorRampType=\"INTERPOLATED\" classificationMode=\"1\" clip=\"0\" \
                 minimumValue=\"0\" maximumValue=\"1\" labelPrecision=\"2\">\n",
            );
            for (v, c) in RAMP {
                x.push_str(&format!(
                    "          <item value=\"{v}\" color=\"{}\" alpha=\"255\" label=\"{}\"/>\n",
                    hex(c),
                    xml_escape(&format!("{title} {v}"))
                ));
            }
            x.push_str("        </colorrampshader>\n      </rastershader>\n    </rasterrenderer>\n");
        }
    }
    x.push_str("  </pipe>\n  <blendMode>0</blendMode>\n</qgis>\n");
    x
}

/// The OGC SLD 1.0 style (`.sld`) of a product; `layer` names it (the product's file name without
/// extension).
pub fn sld(style: Style, layer: &str) -> String {
    let (title, map) = match style {
        Style::Classes(classes) => {
            let mut m = String::from("            <ColorMap type=\"values\">\n");
            for c in classes {
                m.push_str(&format!(
                    "              <ColorMapEntry color=\"{}\" quantity=\"{}\" label=\"{}\" opacity=\"1\"/>\n",
                    hex(c.colour),
                    c.code,
                    xml_escape(&c.name)
                ));
            }
            ("classes".to_string(), m)
        }
        Style::Ramp { title } => {
            let mut m = String::from("            <ColorMap type=\"ramp\">\n");
            for (v, c) in RAMP {
                m.push_str(&format!(
                    "              <ColorMapEntry color=\"{}\" quantity=\"{v}\" label=\"{}\" opacity=\"1\"/>\n",
                    hex(c),
                    xml_escape(&format!("{title} {v}"))
                ));
            }
            (format!("{title} (0-1)"), m)
        }
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <StyledLayerDescriptor version=\"1.0.0\" xmlns=\"http://www.opengis.net/sld\" \
         xmlns:ogc=\"http://www.opengis.net/ogc\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xsi:schemaLocation=\"http://www.opengis.net/sld http://schemas.opengis.net/sld/1.0.0/StyledLayerDescriptor.xsd\">\n\
         \x20 <NamedLayer>\n    <Name>{layer}</Name>\n    <UserStyle>\n      <Title>{title}</Title>\n      \
         <FeatureTypeStyle>\n        <Rule>\n          <RasterSymbolizer>\n            <Opacity>1.0</Opacity>\n\
         {map}            </ColorMap>\n          </RasterSymbolizer>\n        </Rule>\n      </FeatureTypeStyle>\n    \
         </UserStyle>\n  </NamedLayer>\n</StyledLayerDescriptor>\n",
        layer = xml_escape(layer),
        title = xml_escape(&title),
    )
}

/// Extensions of the style files written beside a product.
pub const STYLE_EXTENSIONS: [&str; 2] = ["qml", "sld"];

/// Writes `<dir>/<base>.qml` and `<dir>/<base>.sld`, the styles of the product `<base>.tif`/`.vrt`.
pub fn write_styles(dir: &Path, base: &str, style: Style) -> std::io::Result<()> {
    std::fs::write(dir.join(format!("{base}.qml")), qml(style))?;
    std::fs::write(dir.join(format!("{base}.sld")), sld(style, base))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gappy() -> Vec<SpeciesClass> {
        vec![
            SpeciesClass {
                code: 0,
                name: "spruce".into(),
                colour: [31, 94, 49],
            },
            SpeciesClass {
                code: 3,
                name: "oak & <beech>".into(),
                colour: [200, 80, 40],
            },
        ]
    }

    #[test]
    fn the_palette_ends_at_the_highest_class_and_gaps_are_transparent() {
        let p = class_palette(&gappy());
        assert_eq!(p, vec![[31, 94, 49, 255], [0; 4], [0; 4], [200, 80, 40, 255]]);
        let t = class_colour_table(&gappy());
        assert_eq!(t.entry_count(), 4);
        assert_eq!(t.entry_as_rgb(2).unwrap().a, 0);
        assert_eq!(t.entry_as_rgb(3).unwrap().r, 200);
        assert!(class_palette(&[]).is_empty());
        // Names are sized alike (the category names GDAL stores).
        assert_eq!(category_names(&gappy()).len(), 4);
    }

    #[test]
    fn class_styles_list_each_class_once_with_escaped_names() {
        let q = qml(Style::Classes(&gappy()));
        assert_eq!(q.matches("<paletteEntry ").count(), 2, "{q}");
        assert!(
            q.contains("value=\"3\" color=\"#c85028\" alpha=\"255\" label=\"oak &amp; &lt;beech&gt;\""),
            "{q}"
        );
        let s = sld(Style::Classes(&gappy()), "a\"b");
        assert!(s.contains("<ColorMap type=\"values\">"), "{s}");
        assert!(
            s.contains("color=\"#1f5e31\" quantity=\"0\" label=\"spruce\""),
            "{s}"
        );
        assert!(s.contains("<Name>a&quot;b</Name>"), "{s}");
    }

    #[test]
    fn ramps_run_over_physical_units() {
        let q = qml(Style::Ramp { title: "probability" });
        assert!(q.contains("type=\"singlebandpseudocolor\""));
        assert!(q.contains("minimumValue=\"0\" maximumValue=\"1\""), "{q}");
        let s = sld(Style::Ramp { title: "uncertainty" }, "mosaic_uncertainty");
        assert!(s.contains("<ColorMap type=\"ramp\">"));
        assert!(
            s.contains("quantity=\"0\"") && s.contains("quantity=\"1\""),
            "{s}"
        );
        assert!(!s.contains("10000"));
        assert_eq!(PROBABILITY_SCALE * 10_000.0, 1.0);
    }

    #[test]
    fn control_characters_do_not_break_the_xml() {
        assert_eq!(xml_escape("a\u{1}b\tc"), "a b\tc");
    }
}
