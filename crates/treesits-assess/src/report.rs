//! The accuracy report as JSON (machine-readable; keys in docs/formats.md, "Accuracy reports") and
//! Markdown (tables for people), plus a few summary lines for the log.

use serde_json::{json, Value};

use super::stats::Estimate;
use super::{Assessment, ReferenceKind};

/// Identifies the JSON report.
pub const FORMAT: &str = "treesits-accuracy-report";
pub const FORMAT_VERSION: u32 = 1;
/// Square metres per hectare.
const HECTARE: f64 = 10_000.0;

/// Area of one pixel in the report's unit (hectares, or 1 pixel when the map is not projected).
fn unit_area(a: &Assessment) -> (f64, &'static str) {
    match a.pixel.square_metres {
        Some(m2) => (m2 / HECTARE, "ha"),
        None => (1.0, "pixels"),
    }
}

fn estimate(e: Option<Estimate>, scale: f64) -> Value {
    match e {
        None => Value::Null,
        Some(e) => json!({
            "estimate": e.value * scale,
            "se": e.se.map(|s| s * scale),
            "ci95": e.ci95().map(|c| c * scale),
        }),
    }
}

/// Sample counts and unweighted scores per class.
fn json_per_class(a: &Assessment) -> Vec<Value> {
    a.classes
        .iter()
        .zip(&a.sample.classes)
        .map(|(c, s)| {
            json!({
                "code": c.code,
                "name": c.name,
                "reference_samples": s.reference_samples,
                "map_samples": s.map_samples,
                "correct": s.correct,
                "precision": s.precision,
                "recall": s.recall,
                "f1": s.f1,
            })
        })
        .collect()
}

/// Area-adjusted estimates per class, areas in the report's unit (`unit` per pixel).
fn json_area_classes(a: &Assessment, unit: f64) -> Vec<Value> {
    a.classes
        .iter()
        .zip(&a.area.classes)
        .map(|(c, x)| {
            let area = x.area_pixels;
            json!({
                "code": c.code,
                "name": c.name,
                "mapped_pixels": x.mapped_pixels,
                "mapped_area": x.mapped_pixels as f64 * unit,
                "mapped_proportion": x.mapped_proportion,
                "users_accuracy": estimate(x.users_accuracy, 1.0),
                "producers_accuracy": estimate(x.producers_accuracy, 1.0),
                "area_proportion": estimate(Some(x.proportion), 1.0),
                "estimated_area": {
                    "estimate": area.value * unit,
                    "se": area.se.map(|s| s * unit),
                    "ci95": area.ci95().map(|c| c * unit),
                    "lower": area.ci95().map(|c| (area.value - c) * unit),
                    "upper": area.ci95().map(|c| (area.value + c) * unit),
                },
            })
        })
        .collect()
}

/// The report as a JSON value.
pub fn to_json(a: &Assessment) -> Value {
    let (unit, unit_name) = unit_area(a);
    let classes: Vec<Value> = a
        .classes
        .iter()
        .map(|c| json!({"code": c.code, "name": c.name}))
        .collect();
    let per_class = json_per_class(a);
    let area_classes = json_area_classes(a, unit);
    json!({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "map": a.map,
        "reference": a.references,
        "reference_kind": a.kind.name(),
        "field": a.field,
        "map_nodata": a.map_nodata,
        "ignore": a.ignore,
        "matrix_orientation": "rows = reference class, columns = map class",
        "classes": classes,
        "samples": a.sample.samples,
        "dropped": {
            "outside_map": a.dropped.outside_map,
            "map_nodata": a.dropped.map_nodata,
            "reference_nodata": a.dropped.reference_nodata,
            "ignored": a.dropped.ignored,
        },
        "confusion_matrix": a.confusion.rows(),
        "overall_accuracy": a.sample.overall,
        "kappa": a.sample.kappa,
        "per_class": per_class,
        "area_adjusted": {
            "method": "Olofsson et al. (2014): stratified estimators, strata = map classes",
            "pixel_size": [a.pixel.size_x, a.pixel.size_y],
            "pixel_area_m2": a.pixel.square_metres,
            "area_unit": unit_name,
            "mapped_pixels_total": a.area.total_pixels,
            "mapped_area_total": a.area.total_pixels as f64 * unit,
            "overall_accuracy": estimate(a.area.overall, 1.0),
            "per_class": area_classes,
            "proportion_matrix": a.area.proportions,
            "strata_without_samples": a.area.strata_without_samples.iter().map(|&i| a.classes[i].code).collect::<Vec<_>>(),
        },
    })
}

fn f3(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |x| format!("{x:.3}"))
}

fn pm(e: Option<Estimate>, digits: usize) -> String {
    match e {
        None => "–".into(),
        Some(e) => match e.ci95() {
            Some(c) => format!("{:.digits$} ± {:.digits$}", e.value, c),
            None => format!("{:.digits$}", e.value),
        },
    }
}

fn area_pm(e: Estimate, unit: f64) -> String {
    let digits = if unit == 1.0 { 0 } else { 2 };
    match e.ci95() {
        Some(c) => format!("{:.digits$} ± {:.digits$}", e.value * unit, c * unit),
        None => format!("{:.digits$}", e.value * unit),
    }
}

/// The report as Markdown.
pub fn to_markdown(a: &Assessment) -> String {
    let mut s = String::new();
    md_summary(&mut s, a);
    md_per_class(&mut s, a);
    md_confusion(&mut s, a);
    md_area_notes(&mut s, a);
    md_area_table(&mut s, a);
    s
}

/// The inputs, the samples and the overall accuracy.
fn md_summary(s: &mut String, a: &Assessment) {
    s.push_str("# Accuracy assessment\n\n");
    s.push_str(&format!("- map: `{}`\n", a.map));
    let refs: Vec<String> = a.references.iter().map(|r| format!("`{r}`")).collect();
    match a.kind {
        ReferenceKind::Points => s.push_str(&format!(
            "- reference: {} (points, class from field `{}`)\n",
            refs.join(", "),
            a.field.as_deref().unwrap_or("")
        )),
        ReferenceKind::Raster => s.push_str(&format!(
            "- reference: {} (raster, every pixel where map and reference are valid)\n",
            refs.join(", ")
        )),
    }
    let d = &a.dropped;
    s.push_str(&format!(
        "- samples: {} (left out: {} outside the map, {} on map nodata, {} without reference class, {} ignored)\n\n",
        a.sample.samples, d.outside_map, d.map_nodata, d.reference_nodata, d.ignored
    ));
    s.push_str(&format!(
        "**Overall accuracy {}**, Cohen's kappa {}\n\n",
        f3(a.sample.overall),
        f3(a.sample.kappa)
    ));
}

/// Precision, recall and F1 per class.
fn md_per_class(s: &mut String, a: &Assessment) {
    s.push_str("## Per class\n\n");
    s.push_str("| code | class | reference samples | map samples | precision (user's) | recall (producer's) | F1 |\n");
    s.push_str("|---:|---|---:|---:|---:|---:|---:|\n");
    for (c, x) in a.classes.iter().zip(&a.sample.classes) {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            c.code,
            c.name,
            x.reference_samples,
            x.map_samples,
            f3(x.precision),
            f3(x.recall),
            f3(x.f1)
        ));
    }
}

/// The sample confusion matrix with its totals, the diagonal in bold.
fn md_confusion(s: &mut String, a: &Assessment) {
    s.push_str("\n## Confusion matrix (sample counts; rows = reference, columns = map)\n\n");
    s.push_str("| reference \\ map |");
    for c in &a.classes {
        s.push_str(&format!(" {} |", c.name));
    }
    s.push_str(" total |\n|---|");
    for _ in &a.classes {
        s.push_str("---:|");
    }
    s.push_str("---:|\n");
    for (r, c) in a.classes.iter().enumerate() {
        s.push_str(&format!("| **{}** |", c.name));
        for m in 0..a.classes.len() {
            let n = a.confusion.get(r, m);
            if r == m {
                s.push_str(&format!(" **{n}** |"));
            } else {
                s.push_str(&format!(" {n} |"));
            }
        }
        s.push_str(&format!(" {} |\n", a.confusion.reference_total(r)));
    }
    s.push_str("| **total** |");
    for m in 0..a.classes.len() {
        s.push_str(&format!(" {} |", a.confusion.map_total(m)));
    }
    s.push_str(&format!(" {} |\n", a.confusion.total()));
}

/// How the area-adjusted estimates were made, and what they leave out.
fn md_area_notes(s: &mut String, a: &Assessment) {
    let (unit, unit_name) = unit_area(a);
    s.push_str("\n## Area-adjusted estimates (Olofsson et al. 2014)\n\n");
    s.push_str(&format!(
        "Strata = map classes, stratum sizes = mapped pixels ({} × {} map units each); ± = 95 % confidence \
         interval (1.96 SE). Mapped area {:.2} {unit_name}. Overall accuracy **{}**.\n\n",
        a.pixel.size_x,
        a.pixel.size_y,
        a.area.total_pixels as f64 * unit,
        pm(a.area.overall, 3)
    ));
    if a.kind == ReferenceKind::Raster {
        s.push_str(
            "The reference is a raster: every pixel it covers is a sample, so the intervals are \
             conservative (no finite-population correction).\n\n",
        );
    }
    if !a.area.strata_without_samples.is_empty() {
        let names: Vec<String> = a
            .area
            .strata_without_samples
            .iter()
            .map(|&i| a.classes[i].name.clone())
            .collect();
        s.push_str(&format!(
            "**Warning:** no sample in the mapped class(es) {}: their area is left out of the estimates.\n\n",
            names.join(", ")
        ));
    }
}

/// Mapped and estimated area, user's and producer's accuracy per class.
fn md_area_table(s: &mut String, a: &Assessment) {
    let (unit, unit_name) = unit_area(a);
    s.push_str(&format!(
        "| code | class | mapped area ({unit_name}) | mapped share | user's accuracy | producer's accuracy | estimated area ({unit_name}) |\n"
    ));
    s.push_str("|---:|---|---:|---:|---:|---:|---:|\n");
    for (c, x) in a.classes.iter().zip(&a.area.classes) {
        let mapped = if unit == 1.0 {
            format!("{}", x.mapped_pixels)
        } else {
            format!("{:.2}", x.mapped_pixels as f64 * unit)
        };
        s.push_str(&format!(
            "| {} | {} | {} | {:.4} | {} | {} | {} |\n",
            c.code,
            c.name,
            mapped,
            x.mapped_proportion,
            pm(x.users_accuracy, 3),
            pm(x.producers_accuracy, 3),
            area_pm(x.area_pixels, unit)
        ));
    }
}

/// A few lines for stderr.
pub fn summary(a: &Assessment) -> Vec<String> {
    let mut v = vec![format!(
        "{} samples ({}): overall accuracy {}, kappa {}",
        a.sample.samples,
        a.kind.name(),
        f3(a.sample.overall),
        f3(a.sample.kappa)
    )];
    if let Some((c, x)) = a
        .classes
        .iter()
        .zip(&a.sample.classes)
        .filter(|(_, x)| x.f1.is_some())
        .min_by(|a, b| a.1.f1.partial_cmp(&b.1.f1).unwrap_or(std::cmp::Ordering::Equal))
    {
        v.push(format!("weakest class: {} (F1 {})", c.name, f3(x.f1)));
    }
    v.push(format!(
        "area-adjusted overall accuracy {} (95 % CI)",
        pm(a.area.overall, 3)
    ));
    if !a.area.strata_without_samples.is_empty() {
        v.push(format!(
            "warning: {} mapped class(es) have no sample; the area estimates leave them out",
            a.area.strata_without_samples.len()
        ));
    }
    v
}

/// Why the reports could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("writing {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("writing to stdout: {0}")]
    Stdout(#[source] std::io::Error),
}

/// Writes the JSON and/or Markdown report (`-`: stdout): files under a temporary name first, then
/// all renamed, stdout last, so a failure leaves no report half-written. Returns the files written.
pub fn write_reports(
    a: &Assessment,
    json: Option<&std::path::Path>,
    markdown: Option<&std::path::Path>,
) -> Result<Vec<std::path::PathBuf>, WriteError> {
    use std::io::Write;
    let mut json_text = serde_json::to_string_pretty(&to_json(a)).expect("a JSON value serialises");
    json_text.push('\n');
    let mut staged = Vec::new();
    let mut stdout_text = None;
    for (target, text) in [(json, json_text), (markdown, to_markdown(a))] {
        let Some(target) = target else { continue };
        if target.as_os_str() == "-" {
            stdout_text = Some(text);
            continue;
        }
        let out = treesits_core::atomic::AtomicPath::new(target);
        std::fs::write(out.temp(), text).map_err(|source| WriteError::File {
            path: target.to_path_buf(),
            source,
        })?;
        staged.push(out);
    }
    let mut written = Vec::new();
    for out in staged {
        let path = out.target().to_path_buf();
        written.push(out.commit().map_err(|source| WriteError::File { path, source })?);
    }
    if let Some(text) = stdout_text {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(WriteError::Stdout)?;
    }
    Ok(written)
}
