//! `mosaic`'s styling, read back as a GIS would: the `.qml` and `.sld` files beside every product
//! list exactly the model's classes (or a 0–1 ramp), the colour tables end at the highest class code,
//! probability-like bands carry scale 1e-4 / offset 0, and the reprojected COG keeps the category
//! names and colours.

use std::path::Path;

use gdal::raster::RasterBand;
use gdal::{Dataset, Metadata};
use roxmltree::{Document, Node, ParsingOptions};
use treesits_core::species::{category_names, tree_species, SpeciesClass, CLASS_NODATA};
use treesits_gdal::cog::read_category_names;
use treesits_testkit::cli::{file_names, s, Tool};
use treesits_testkit::predictions::{tile_predictions, PredictionSpec, TilePredictions};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("mosaic", env!("CARGO_BIN_EXE_mosaic"));
const SLD_NS: &str = "http://www.opengis.net/sld";

/// The model's classes in these tests: the ten species with the last one moved to code 12 (so codes
/// 9–11 are no class) and a name that needs escaping in XML.
fn classes() -> Vec<SpeciesClass> {
    let mut c = tree_species();
    c[4].name = "oak & <\"red\">".into();
    c[9].code = 12;
    c
}

/// Synthetic predictions of two tiles with [`classes`], as chunk files in `<dir>/chunks`, with
/// per-class probabilities and uncertainty.
fn predictions(dir: &Path) -> Vec<TilePredictions> {
    let cfg = SynthConfig {
        out: dir.join("synth"),
        seed: 5,
        tiles: 2,
        tile_pixels: 48,
        dates: 1,
        ..Default::default()
    };
    let spec = PredictionSpec {
        chunk_rows: 24,
        ..Default::default()
    };
    assert!(spec.probabilities && spec.uncertainty.is_some());
    let remap = |v: &mut u8| {
        if *v == 9 {
            *v = 12;
        }
    };
    let tiles: Vec<TilePredictions> = cfg
        .tile_ids()
        .into_iter()
        .map(|t| {
            let mut p = tile_predictions(&cfg, t, &spec);
            p.meta.classes = classes();
            p.class.iter_mut().for_each(remap);
            for c in &mut p.chunks {
                c.class.iter_mut().for_each(remap);
            }
            p
        })
        .collect();
    assert!(
        tiles.iter().any(|t| t.class.contains(&12)),
        "the moved class must be mapped somewhere"
    );
    for t in &tiles {
        t.write_chunk_files(&dir.join("chunks")).unwrap();
    }
    tiles
}

fn run(args: &[&str]) {
    let o = TOOL.run(args);
    assert!(
        o.status.success(),
        "mosaic failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn parse(text: &str) -> Document<'_> {
    let opts = ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    Document::parse_with_options(text, opts).unwrap_or_else(|e| panic!("not XML: {e}\n{text}"))
}

fn elements<'a, 'i>(root: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    root.descendants().filter(move |n| n.tag_name().name() == name)
}

fn attr<'a>(n: Node<'a, '_>, name: &str) -> &'a str {
    n.attribute(name)
        .unwrap_or_else(|| panic!("<{}> without {name}", n.tag_name().name()))
}

/// What a style file must show.
#[derive(Debug, Clone, Copy)]
enum Want {
    Classes,
    Ramp,
}

/// The QGIS style: a paletted renderer with exactly the classes, or a pseudocolour ramp over 0–1.
fn check_qml(path: &Path, want: Want) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = parse(&text);
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "qgis", "{}", path.display());
    let renderers: Vec<_> = elements(root, "rasterrenderer").collect();
    assert_eq!(renderers.len(), 1, "{}", path.display());
    let r = renderers[0];
    assert_eq!(attr(r, "band"), "1");
    match want {
        Want::Classes => {
            assert_eq!(attr(r, "type"), "paletted", "{}", path.display());
            let got: Vec<(String, String, String, String)> = elements(r, "paletteEntry")
                .map(|e| {
                    (
                        attr(e, "value").to_string(),
                        attr(e, "color").to_string(),
                        attr(e, "alpha").to_string(),
                        attr(e, "label").to_string(),
                    )
                })
                .collect();
            let expected: Vec<(String, String, String, String)> = classes()
                .iter()
                .map(|c| (c.code.to_string(), hex(c.colour), "255".into(), c.name.clone()))
                .collect();
            assert_eq!(got, expected, "{}", path.display());
        }
        Want::Ramp => {
            assert_eq!(attr(r, "type"), "singlebandpseudocolor", "{}", path.display());
            let shader: Vec<_> = elements(r, "colorrampshader").collect();
            assert_eq!(shader.len(), 1);
            assert_eq!(attr(shader[0], "minimumValue"), "0");
            assert_eq!(attr(shader[0], "maximumValue"), "1");
            let values: Vec<f64> = elements(shader[0], "item")
                .map(|i| attr(i, "value").parse().unwrap())
                .collect();
            assert_eq!(values.first(), Some(&0.0), "{}", path.display());
            assert_eq!(values.last(), Some(&1.0), "{}", path.display());
            assert!(values.windows(2).all(|w| w[0] < w[1]));
        }
    }
}

/// The SLD 1.0: a `values` colour map with exactly the classes, or a `ramp` over 0–1.
fn check_sld(path: &Path, want: Want) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = parse(&text);
    let root = doc.root_element();
    assert!(
        root.has_tag_name((SLD_NS, "StyledLayerDescriptor")),
        "{}",
        path.display()
    );
    assert_eq!(attr(root, "version"), "1.0.0");
    let base = path.file_stem().unwrap().to_str().unwrap();
    let name = elements(root, "NamedLayer")
        .flat_map(|l| l.children().filter(|n| n.has_tag_name((SLD_NS, "Name"))))
        .map(|n| n.text().unwrap_or(""))
        .collect::<Vec<_>>();
    assert_eq!(name, [base]);
    let maps: Vec<_> = elements(root, "RasterSymbolizer")
        .flat_map(|r| r.children().filter(|n| n.has_tag_name((SLD_NS, "ColorMap"))))
        .collect();
    assert_eq!(maps.len(), 1, "{}", path.display());
    let entries: Vec<(String, String, String)> = maps[0]
        .children()
        .filter(|n| n.has_tag_name((SLD_NS, "ColorMapEntry")))
        .map(|e| {
            (
                attr(e, "quantity").to_string(),
                attr(e, "color").to_string(),
                attr(e, "label").to_string(),
            )
        })
        .collect();
    match want {
        Want::Classes => {
            assert_eq!(attr(maps[0], "type"), "values");
            let expected: Vec<(String, String, String)> = classes()
                .iter()
                .map(|c| (c.code.to_string(), hex(c.colour), c.name.clone()))
                .collect();
            assert_eq!(entries, expected, "{}", path.display());
        }
        Want::Ramp => {
            assert_eq!(attr(maps[0], "type"), "ramp");
            let q: Vec<f64> = entries.iter().map(|e| e.0.parse().unwrap()).collect();
            assert_eq!(q.first(), Some(&0.0), "{}", path.display());
            assert_eq!(q.last(), Some(&1.0), "{}", path.display());
        }
    }
}

/// A class band: nodata 255, each class in its colour, category names up to the highest code;
/// `entries` is the colour table's length (VRTs: highest code + 1; GeoTIFFs: 256, as TIFF's colour
/// map is always 2^bits long).
fn check_class_band(path: &Path, entries: usize) {
    let ds = Dataset::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let band = ds.rasterband(1).unwrap();
    let what = path.display();
    assert_eq!(band.no_data_value(), Some(f64::from(CLASS_NODATA)), "{what}");
    let table = band
        .color_table()
        .unwrap_or_else(|| panic!("{what}: no colour table"));
    assert_eq!(table.entry_count(), entries, "{what}");
    let classes = classes();
    for c in &classes {
        let e = table.entry_as_rgb(usize::from(c.code)).unwrap();
        assert_eq!([e.r, e.g, e.b], c.colour.map(i16::from), "{} in {what}", c.name);
        assert_eq!(e.a, 255, "{} in {what}", c.name);
    }
    for code in 9..12 {
        let e = table.entry_as_rgb(code).unwrap();
        assert_eq!([e.r, e.g, e.b], [0, 0, 0], "code {code} in {what}");
        if entries < 256 {
            // TIFF colour maps have no alpha; a VRT's says "transparent".
            assert_eq!(e.a, 0, "code {code} in {what}");
        }
    }
    let names = read_category_names(&band);
    assert_eq!(names, category_names(&classes), "{what}");
    assert_eq!(names.len(), 13);
    assert_eq!(names[4], "oak & <\"red\">");
}

/// A probability-like band: scale 1e-4, offset 0, a description in physical units.
fn check_scaled(band: &RasterBand, what: &str) {
    let scale = band.scale().unwrap_or_else(|| panic!("{what}: no scale"));
    assert!((scale - 1e-4).abs() < 1e-15, "{what}: scale {scale}");
    assert_eq!(band.offset(), Some(0.0), "{what}");
    let d = band.description().unwrap();
    assert!(d.contains("0-1") && !d.contains("10000"), "{what}: {d}");
}

fn check_scaled_file(path: &Path, bands: usize) {
    let ds = Dataset::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(ds.raster_count(), bands, "{}", path.display());
    for b in 1..=bands {
        check_scaled(
            &ds.rasterband(b).unwrap(),
            &format!("{} band {b}", path.display()),
        );
    }
}

#[test]
fn every_product_has_styles_colour_tables_and_scales_a_gis_reads() {
    let dir = tempfile::tempdir().unwrap();
    let tiles = predictions(dir.path());
    let out = dir.path().join("maps");
    let chunks = dir.path().join("chunks");
    run(&[
        "--input",
        s(&chunks),
        "--out-dir",
        s(&out),
        "--t-srs",
        "3857",
        "-q",
    ]);
    let files = file_names(&out);

    // Style files beside every class and probability product, under its base name.
    let mut styled: Vec<(String, Want)> = Vec::new();
    for t in &tiles {
        styled.push((format!("{}_class", t.tile), Want::Classes));
        for p in ["prob", "probabilities", "uncertainty"] {
            styled.push((format!("{}_{p}", t.tile), Want::Ramp));
        }
    }
    for (base, want) in [
        ("mosaic_class", Want::Classes),
        ("mosaic_class_epsg3857", Want::Classes),
        ("mosaic_prob", Want::Ramp),
        ("mosaic_prob_epsg3857", Want::Ramp),
        ("mosaic_uncertainty", Want::Ramp),
        ("mosaic_probabilities", Want::Ramp),
    ] {
        styled.push((base.to_string(), want));
    }
    for (base, want) in &styled {
        // The product the style belongs to is there (QGIS loads <base>.qml for <base>.tif/.vrt).
        assert!(
            files.contains(&format!("{base}.tif")) || files.contains(&format!("{base}.vrt")),
            "{base}: no product for the style in {files:?}"
        );
        check_qml(&out.join(format!("{base}.qml")), *want);
        check_sld(&out.join(format!("{base}.sld")), *want);
    }
    let style_files = files
        .iter()
        .filter(|f| f.ends_with(".qml") || f.ends_with(".sld"))
        .count();
    assert_eq!(style_files, 2 * styled.len(), "{files:?}");

    // Colour tables and category names: tiles, VRT, COG and the reprojected COG.
    check_class_band(&out.join("mosaic_class.vrt"), 13);
    for t in &tiles {
        check_class_band(&out.join(format!("{}_class.tif", t.tile)), 256);
    }
    check_class_band(&out.join("mosaic_class.tif"), 256);
    check_class_band(&out.join("mosaic_class_epsg3857.tif"), 256);
    let vrt = Dataset::open(out.join("mosaic_class.vrt")).unwrap();
    let vrt_band = vrt.rasterband(1).unwrap();
    let table = vrt_band.color_table().unwrap();
    assert!(
        table.entry(usize::from(CLASS_NODATA)).is_none(),
        "nodata has no colour entry: GIS tools draw it as nodata"
    );
    let web = Dataset::open(out.join("mosaic_class_epsg3857.tif")).unwrap();
    assert_eq!(web.spatial_ref().unwrap().auth_code().unwrap(), 3857);
    // The moved class survives the reprojection with its code.
    let (w, h) = web.raster_size();
    let v = web
        .rasterband(1)
        .unwrap()
        .read_as::<u8>((0, 0), (w, h), (w, h), None)
        .unwrap()
        .into_shape_and_vec()
        .1;
    assert!(v.contains(&12) && !v.iter().any(|c| (9..12).contains(c)));

    // Scale and offset on every probability-like band, wherever it is; values stay UInt16 x 10000.
    let k = classes().len();
    for t in &tiles {
        check_scaled_file(&out.join(format!("{}_prob.tif", t.tile)), 1);
        check_scaled_file(&out.join(format!("{}_uncertainty.tif", t.tile)), 1);
        check_scaled_file(&out.join(format!("{}_probabilities.tif", t.tile)), k);
    }
    for name in [
        "mosaic_prob.vrt",
        "mosaic_prob.tif",
        "mosaic_prob_epsg3857.tif",
        "mosaic_uncertainty.vrt",
        "mosaic_uncertainty.tif",
    ] {
        check_scaled_file(&out.join(name), 1);
    }
    check_scaled_file(&out.join("mosaic_probabilities.vrt"), k);
    let t = &tiles[0];
    let ds = Dataset::open(out.join(format!("{}_prob.tif", t.tile))).unwrap();
    let (cols, rows) = ds.raster_size();
    let stored = ds
        .rasterband(1)
        .unwrap()
        .read_as::<u16>((0, 0), (cols, rows), (cols, rows), None)
        .unwrap()
        .into_shape_and_vec()
        .1;
    let expected: Vec<u16> = (0..rows * cols).map(|i| t.at(i / cols, i % cols).1).collect();
    assert_eq!(stored, expected, "stored values are the chunks' UInt16 x 10000");
    assert!(stored.iter().any(|&p| p > 5000 && p <= 10000));
}

#[test]
fn a_rerun_replaces_the_styles_of_an_earlier_run() {
    let dir = tempfile::tempdir().unwrap();
    predictions(dir.path());
    let out = dir.path().join("maps");
    let chunks = dir.path().join("chunks");
    run(&[
        "--input",
        s(&chunks),
        "--out-dir",
        s(&out),
        "--t-srs",
        "3857",
        "-q",
    ]);
    assert!(out.join("mosaic_class_epsg3857.qml").exists());
    std::fs::write(out.join("mine.qml"), "<qgis/>").unwrap();
    run(&["--input", s(&chunks), "--out-dir", s(&out), "-q"]);
    let files = file_names(&out);
    for gone in [
        "mosaic_class_epsg3857.qml",
        "mosaic_class_epsg3857.sld",
        "mosaic_prob_epsg3857.qml",
    ] {
        assert!(
            !files.contains(&gone.to_string()),
            "{gone} left from the first run"
        );
    }
    assert!(files.contains(&"mosaic_class.qml".to_string()));
    assert!(files.contains(&"mine.qml".to_string()), "a user's file is kept");
}
