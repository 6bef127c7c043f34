//! `cube-inventory` run as a program on synthetic cubes: what it records, what `check` reports
//! after an acquisition is added, removed or replaced, rolling windows, masks, recipes, S3, errors.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use treesits_core::grid::PrjForm;
use treesits_core::Sensor;
use treesits_gdal::ForceLayout;
use treesits_testkit::cli::{assert_snapshot, s, stderr, stdout, Tool};
use treesits_testkit::moto::Moto;
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("cube-inventory", env!("CARGO_BIN_EXE_cube-inventory"));

struct Cube {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cube: PathBuf,
    tiles: Vec<String>,
}

fn synth(tiles: usize, dates: usize) -> Cube {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed: 11,
        tiles,
        tile_pixels: 30,
        dates,
        year: 2021,
        sensors: vec![Sensor::Sen2a, Sensor::Sen2b],
        layout: ForceLayout::Force38,
        prj_form: PrjForm::Tagged,
        resolution: 10.0,
        force: false,
    };
    let m = treesits_testkit::generate(&cfg).unwrap();
    let root = dir.path().join("synth");
    Cube {
        cube: root.join("cube"),
        root,
        tiles: {
            let mut ids: Vec<String> = m.tiles.iter().map(|t| t.tile_id.to_string()).collect();
            ids.sort();
            ids
        },
        _dir: dir,
    }
}

/// `cube-inventory check --cube <the cube> --previous <previous> <extra…>`.
fn check(c: &Cube, previous: &Path, extra: &[&str]) -> Output {
    TOOL.run(&[&["check", "--cube", s(&c.cube), "--previous", s(previous)], extra].concat())
}

fn status(out: &Output) -> i32 {
    out.status.code().unwrap()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The Level-2 files of one tile directory: (name, size), sorted.
fn files_of(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .filter(|(n, _)| n.ends_with(".tif"))
        .collect();
    v.sort();
    v
}

/// The acquisition files of the newest date of a tile, moved into `aside` (so they can come back).
fn set_aside_newest(tile_dir: &Path, aside: &Path) -> String {
    let newest = files_of(tile_dir)
        .iter()
        .map(|(n, _)| n[..8].to_string())
        .max()
        .unwrap();
    std::fs::create_dir_all(aside).unwrap();
    for (name, _) in files_of(tile_dir) {
        if name.starts_with(&newest) {
            std::fs::rename(tile_dir.join(&name), aside.join(&name)).unwrap();
        }
    }
    newest
}

fn bring_back(tile_dir: &Path, aside: &Path) {
    for e in std::fs::read_dir(aside).unwrap() {
        let e = e.unwrap();
        std::fs::rename(e.path(), tile_dir.join(e.file_name())).unwrap();
    }
}

/// "YYYYMMDD" → "YYYY-MM-DD".
fn iso(compact: &str) -> String {
    format!("{}-{}-{}", &compact[..4], &compact[4..6], &compact[6..8])
}

fn sensor_of(tile_dir: &Path, compact: &str) -> String {
    files_of(tile_dir)
        .iter()
        .find(|(n, _)| n.starts_with(compact))
        .map(|(n, _)| n.split('_').nth(2).unwrap().to_string())
        .unwrap()
}

#[test]
fn scan_records_every_selected_file_with_its_size() {
    let c = synth(2, 6);
    let inv = c.root.join("inventory.json");
    let plan = c.root.join("plan.csv");
    let r = TOOL.run(&["scan", "--cube", s(&c.cube), "--out", s(&inv), "--plan", s(&plan)]);
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    assert_eq!(stdout(&r), "");
    let v = json(&inv);
    assert_eq!(v["format"], "treesits-inventory");
    assert_eq!(v["version"], 1);
    assert_eq!(v["software"]["treesits"], env!("CARGO_PKG_VERSION"));
    let tiles = v["tiles"].as_array().unwrap();
    let ids: Vec<&str> = tiles.iter().map(|t| t["tile_id"].as_str().unwrap()).collect();
    assert_eq!(ids, c.tiles.iter().map(String::as_str).collect::<Vec<_>>());
    for t in tiles {
        let dir = c.cube.join(t["tile_id"].as_str().unwrap());
        let mut recorded: Vec<(String, u64)> = Vec::new();
        let mut last = String::new();
        for a in t["acquisitions"].as_array().unwrap() {
            for p in ["boa", "qai"] {
                recorded.push((
                    a[p]["name"].as_str().unwrap().to_string(),
                    a[p]["size"].as_u64().unwrap(),
                ));
            }
            // In observation order, and named by its date and sensor.
            let key = format!(
                "{} {}",
                a["date"].as_str().unwrap(),
                a["sensor"].as_str().unwrap()
            );
            assert!(key > last, "{key} after {last}");
            let boa = a["boa"]["name"].as_str().unwrap();
            assert_eq!(iso(&boa[..8]), a["date"].as_str().unwrap());
            assert!(boa.contains(a["sensor"].as_str().unwrap()));
            last = key;
        }
        recorded.sort();
        assert_eq!(recorded, files_of(&dir));
        assert_eq!(t["acquisitions"].as_array().unwrap().len(), 6);
        assert_eq!(t["fingerprint"].as_str().unwrap().len(), 64);
    }
    let plan_text = std::fs::read_to_string(&plan).unwrap();
    let lines: Vec<&str> = plan_text.lines().collect();
    assert_eq!(
        lines[0],
        "tile_id,status,fingerprint,product_key,acquisitions,first_date,last_date,reason"
    );
    assert_eq!(lines.len(), 3);
    let f: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(f.len(), 8);
    assert_eq!((f[0], f[1], f[4]), (c.tiles[0].as_str(), "new", "6"));
    assert_eq!(f[2], tiles[0]["fingerprint"].as_str().unwrap());
    assert_eq!(f[5], tiles[0]["acquisitions"][0]["date"].as_str().unwrap());
    assert_eq!(f[6], tiles[0]["acquisitions"][5]["date"].as_str().unwrap());

    // The same cube gives the same fingerprints; stdout carries the same JSON with --out -.
    let r = TOOL.run(&["scan", "--cube", s(&c.cube), "--out", "-"]);
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    let again: Value = serde_json::from_slice(&r.stdout).unwrap();
    // Everything but the time each scan was made.
    let without_made = |v: &Value| {
        let mut tiles = v["tiles"].clone();
        for t in tiles.as_array_mut().unwrap() {
            assert_eq!(t["made"], v["created"]);
            t.as_object_mut().unwrap().remove("made");
        }
        tiles
    };
    assert_eq!(without_made(&again), without_made(&v));
}

#[test]
fn check_reports_exactly_the_tile_that_received_an_acquisition() {
    let c = synth(3, 8);
    let target = c.cube.join(&c.tiles[1]);
    let aside = c.root.join("aside");
    let newest = set_aside_newest(&target, &aside);
    let inv = c.root.join("inventory.json");
    let r = TOOL.run(&["scan", "--cube", s(&c.cube), "--out", s(&inv)]);
    assert_eq!(status(&r), 0, "{}", stderr(&r));

    // Nothing changed: status 3, nothing on stdout, the plan says unchanged everywhere.
    let plan = c.root.join("plan.csv");
    let r = check(&c, &inv, &["--plan", s(&plan)]);
    assert_eq!(status(&r), 3, "{}", stderr(&r));
    assert_eq!(stdout(&r), "");
    let text = std::fs::read_to_string(&plan).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.contains(",unchanged,")).count(),
        3,
        "{text}"
    );

    // One acquisition lands in one tile: that tile, and only it, is reported.
    bring_back(&target, &aside);
    let sensor = sensor_of(&target, &newest);
    let new_inv = c.root.join("new.json");
    let r = check(&c, &inv, &["--out", s(&new_inv), "--plan", s(&plan)]);
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    assert_eq!(
        stdout(&r),
        format!("{}\tchanged\tadded {} {sensor}\n", c.tiles[1], iso(&newest))
    );
    let text = std::fs::read_to_string(&plan).unwrap();
    let statuses: Vec<(&str, &str)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0], f[1])
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (c.tiles[0].as_str(), "unchanged"),
            (c.tiles[1].as_str(), "changed"),
            (c.tiles[2].as_str(), "unchanged"),
        ]
    );
    // The new inventory holds the added acquisition; against it nothing has changed.
    let v = json(&new_inv);
    // Who made each tile's products: this run for the changed tile; the earlier run (whatever it
    // recorded) for the others.
    let mut earlier = json(&inv);
    for t in earlier["tiles"].as_array_mut().unwrap() {
        t["made"] = "2020-01-01T00:00:00Z".into();
        t["software"]["treesits"] = "0.0.1".into();
    }
    let edited = c.root.join("edited.json");
    std::fs::write(&edited, serde_json::to_string(&earlier).unwrap()).unwrap();
    let remade = c.root.join("remade.json");
    let r = check(&c, &edited, &["--out", s(&remade)]);
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    let remade = json(&remade);
    for (i, t) in remade["tiles"].as_array().unwrap().iter().enumerate() {
        if i == 1 {
            assert_eq!(t["made"], remade["created"]);
            assert_eq!(t["software"]["treesits"], env!("CARGO_PKG_VERSION"));
        } else {
            assert_eq!(t["made"], "2020-01-01T00:00:00Z");
            assert_eq!(t["software"]["treesits"], "0.0.1");
        }
    }
    assert_eq!(v["tiles"][1]["acquisitions"].as_array().unwrap().len(), 8);
    let r = check(&c, &new_inv, &[]);
    assert_eq!(status(&r), 3, "{}", stderr(&r));
}

#[test]
fn removed_and_replaced_files_are_detected() {
    let c = synth(2, 6);
    let inv = c.root.join("inventory.json");
    assert_eq!(
        status(&TOOL.run(&["scan", "--cube", s(&c.cube), "--out", s(&inv)])),
        0
    );
    let t0 = c.cube.join(&c.tiles[0]);
    let t1 = c.cube.join(&c.tiles[1]);
    let files0 = files_of(&t0);
    let files1 = files_of(&t1);

    // Tile 0 loses one acquisition (BOA and QAI); tile 1 gets one QAI replaced by another file of the
    // same size (only the modification time differs).
    let (gone, _) = &files0[0];
    let gone_date = gone[..8].to_string();
    for (name, _) in &files0 {
        if name.starts_with(&gone_date) {
            std::fs::remove_file(t0.join(name)).unwrap();
        }
    }
    let (qai, _) = files1
        .iter()
        .rev()
        .find(|(n, _)| n.ends_with("_QAI.tif"))
        .unwrap();
    let path = t1.join(qai);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();

    let r = check(&c, &inv, &[]);
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    let gone_sensor = gone.split('_').nth(2).unwrap();
    let qai_sensor = qai.split('_').nth(2).unwrap();
    assert_eq!(
        stdout(&r),
        format!(
            "{}\tchanged\tremoved {} {gone_sensor}\n{}\tchanged\treplaced {} {qai_sensor}\n",
            c.tiles[0],
            iso(&gone_date),
            c.tiles[1],
            iso(&qai[..8]),
        )
    );

    // A BOA whose QAI disappeared is an error naming the file, as in cube-extract.
    std::fs::remove_file(&path).unwrap();
    let r = check(&c, &inv, &[]);
    assert_eq!(status(&r), 1);
    let boa = qai.replace("_QAI", "_BOA");
    assert!(
        stderr(&r).contains(&format!(
            "{}: BOA file has no QAI file ({qai} is missing)",
            t1.join(&boa).display()
        )),
        "{}",
        stderr(&r)
    );
}

#[test]
fn a_new_acquisition_pushes_old_ones_out_of_a_rolling_window_on_every_tile() {
    let c = synth(2, 6);
    let (t0, t1) = (c.cube.join(&c.tiles[0]), c.cube.join(&c.tiles[1]));
    let dates: Vec<String> = {
        let mut d: Vec<String> = files_of(&t0).iter().map(|(n, _)| n[..8].to_string()).collect();
        d.dedup();
        d
    };
    let day = |compact: &str| iso(compact).parse::<treesits_core::Date>().unwrap();
    let (first, newest) = (day(&dates[0]), day(dates.last().unwrap()));
    // A window exactly as long as first..newest minus one day: with the newest date as anchor the
    // first date falls out; with the one before it stays in.
    let span = format!("{}D", newest.days_since_epoch() - first.days_since_epoch());
    let aside0 = c.root.join("aside0");
    let aside1 = c.root.join("aside1");
    set_aside_newest(&t0, &aside0);
    set_aside_newest(&t1, &aside1);
    let inv = c.root.join("inventory.json");
    let r = TOOL.run(&["scan", "--cube", s(&c.cube), "--window", &span, "--out", s(&inv)]);
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    let v = json(&inv);
    assert_eq!(v["selection"]["window"], span.as_str());
    assert_eq!(v["window_end"], day(&dates[dates.len() - 2]).to_string());
    assert_eq!(v["tiles"][1]["acquisitions"][0]["date"], first.to_string());

    // Only tile 0 receives the newest acquisition, but the window moves for both.
    bring_back(&t0, &aside0);
    let r = check(&c, &inv, &[]);
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    let s0 = sensor_of(&t0, &dates[0]);
    let sn = sensor_of(&t0, dates.last().unwrap());
    assert_eq!(
        stdout(&r),
        format!(
            "{}\tchanged\tadded {newest} {sn}; removed {first} {s0}\n{}\tchanged\tremoved {first} {s0}\n",
            c.tiles[0], c.tiles[1]
        )
    );
    // --as-of pins the window: the previous window again, so only the added date... is outside it.
    let r = check(
        &c,
        &inv,
        &[
            "--window",
            &span,
            "--as-of",
            &day(&dates[dates.len() - 2]).to_string(),
        ],
    );
    assert_eq!(status(&r), 3, "{}\n{}", stdout(&r), stderr(&r));
}

#[test]
fn masks_from_tiles_csv_and_the_recipe_are_part_of_the_inputs() {
    let c = synth(2, 4);
    // A tiles.csv as aoi-select writes it, with a mask file per tile.
    let sel = c.root.join("selection");
    std::fs::create_dir_all(&sel).unwrap();
    let mut csv = String::from("tile_id,tile_x,tile_y,xmin,ymin,xmax,ymax,pixels,mask\n");
    for t in &c.tiles {
        let id: treesits_core::TileId = t.parse().unwrap();
        csv.push_str(&format!("{t},{},{},0,0,1,1,1,{t}.mask.tif\n", id.x, id.y));
        std::fs::write(sel.join(format!("{t}.mask.tif")), format!("mask of {t}")).unwrap();
    }
    std::fs::write(sel.join("tiles.csv"), csv).unwrap();
    let model = c.root.join("model.onnx");
    std::fs::write(&model, b"model one").unwrap();
    let inv = c.root.join("inventory.json");
    let tiles = sel.join("tiles.csv");
    let base = ["--cube", s(&c.cube), "--tiles", s(&tiles)];
    let recipe = ["--model", s(&model), "--param", "screen=cloud"];
    let r = TOOL.run(&[&["scan"], &base[..], &recipe[..], &["--out", s(&inv)]].concat());
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    let v = json(&inv);
    assert_eq!(v["tiles"][0]["mask"], format!("{}.mask.tif", c.tiles[0]));
    assert_eq!(
        v["tiles"][0]["mask_sha256"],
        treesits_core::inventory::sha256_hex(format!("mask of {}", c.tiles[0]).as_bytes())
    );
    assert_eq!(
        v["recipe"]["model_sha256"],
        treesits_core::inventory::sha256_hex(b"model one")
    );
    assert_eq!(v["recipe"]["screen"], "cloud");
    let check_tiles =
        |extra: &[&str]| TOOL.run(&[&["check", "--previous", s(&inv)], &base[..], extra].concat());
    assert_eq!(status(&check_tiles(&recipe)), 3);
    // Without --model/--param the check keeps the recorded recipe.
    assert_eq!(status(&check_tiles(&[])), 3);
    // Without --tiles it checks the recorded tiles with their recorded masks (as a CronJob does).
    let r = check(&c, &inv, &["--out", s(&c.root.join("again.json"))]);
    assert_eq!(status(&r), 3, "{}", stderr(&r));
    let again = json(&c.root.join("again.json"));
    assert_eq!(again["tiles"], v["tiles"]);
    assert_eq!(again["recipe"], v["recipe"]);

    // A new mask for tile 1.
    std::fs::write(sel.join(format!("{}.mask.tif", c.tiles[1])), b"another mask").unwrap();
    let r = check_tiles(&recipe);
    assert_eq!(status(&r), 0);
    assert_eq!(stdout(&r), format!("{}\tchanged\tmask changed\n", c.tiles[1]));
    std::fs::write(
        sel.join(format!("{}.mask.tif", c.tiles[1])),
        format!("mask of {}", c.tiles[1]),
    )
    .unwrap();

    // A new model or another parameter value changes every tile.
    std::fs::write(&model, b"model two").unwrap();
    let r = check_tiles(&recipe);
    assert_eq!(status(&r), 0);
    assert_eq!(
        stdout(&r),
        format!(
            "{}\tchanged\trecipe changed: model_sha256\n{}\tchanged\trecipe changed: model_sha256\n",
            c.tiles[0], c.tiles[1]
        )
    );
    std::fs::write(&model, b"model one").unwrap();
    let r = check_tiles(&["--model", s(&model), "--param", "screen=none"]);
    assert_eq!(stdout(&r).lines().count(), 2);
    assert!(stdout(&r).contains("recipe changed: screen"));
}

#[test]
fn reuse_requires_the_products_of_unchanged_tiles() {
    let c = synth(2, 4);
    let inv = c.root.join("inventory.json");
    let plan = c.root.join("plan.csv");
    assert_eq!(
        status(&TOOL.run(&["scan", "--cube", s(&c.cube), "--out", s(&inv), "--plan", s(&plan)])),
        0
    );
    let keys: Vec<(String, String)> = std::fs::read_to_string(&plan)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[3].to_string())
        })
        .collect();
    // Products of tile 0 published under its key; none for tile 1.
    let published = c.root.join("predictions");
    let dir0 = published.join(&keys[0].0).join(&keys[0].1);
    std::fs::create_dir_all(&dir0).unwrap();
    std::fs::write(dir0.join("x.pred.arrows"), b"p").unwrap();
    let r = check(&c, &inv, &["--reuse", s(&published), "--plan", s(&plan)]);
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    assert_eq!(
        stdout(&r),
        format!("{}\tchanged\tno products to reuse\n", c.tiles[1])
    );
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(text.contains(&format!("{},unchanged,", c.tiles[0])), "{text}");
    assert!(text.contains(&format!("{},changed,", c.tiles[1])), "{text}");
}

#[test]
fn missing_previous_means_every_tile_is_new_and_bad_inputs_are_errors() {
    let c = synth(2, 4);
    let r = TOOL.run(&[
        "check",
        "--cube",
        s(&c.cube),
        "--previous",
        s(&c.root.join("none.json")),
    ]);
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    assert_eq!(
        stdout(&r),
        format!(
            "{}\tnew\tnot in the previous inventory\n{}\tnew\tnot in the previous inventory\n",
            c.tiles[0], c.tiles[1]
        )
    );
    assert!(stderr(&r).contains("every tile counts as new"), "{}", stderr(&r));

    let not_inventory = c.root.join("manifest.json");
    let bad_tile_dir = c.root.join("nowhere");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["check", "--cube", s(&c.cube), "--previous", s(&not_inventory)],
            format!(
                "cube-inventory: error: --previous {}: not a treesits inventory",
                not_inventory.display()
            ),
        ),
        (
            vec!["scan", "--cube", s(&c.cube), "--tile", "X1_Y2_Z"],
            "cube-inventory: error: --tile X1_Y2_Z: not a tile id like X0058_Y0056".into(),
        ),
        (
            vec!["scan", "--cube", s(&bad_tile_dir), "--tile", &c.tiles[0]],
            format!(
                "cube-inventory: error: --cube {}: no such directory",
                bad_tile_dir.display()
            ),
        ),
        (
            vec![
                "scan",
                "--cube",
                s(&c.cube),
                "--start",
                "2021-06-01",
                "--end",
                "2021-05-01",
            ],
            "cube-inventory: error: empty date range: --start 2021-06-01 is after --end 2021-05-01".into(),
        ),
        (
            vec!["scan", "--cube", s(&c.cube), "--sensors", "SEN2A,XYZ"],
            "cube-inventory: error: --sensors".into(),
        ),
    ];
    for (args, want) in cases {
        let r = TOOL.run(&args);
        assert_eq!(status(&r), 1, "{args:?}: {}", stderr(&r));
        assert!(
            stderr(&r).starts_with(&want),
            "{args:?}:\n{}\nwant: {want}",
            stderr(&r)
        );
        assert_eq!(stderr(&r).lines().count(), 1, "{}", stderr(&r));
    }
    // Usage errors are clap's (status 2).
    let r = TOOL.run(&["scan", "--cube", s(&c.cube), "--window", "12Y"]);
    assert_eq!(status(&r), 2);
    assert!(stderr(&r).contains("365D or 12M"), "{}", stderr(&r));
    // Nothing is written when the scan fails.
    let out = c.root.join("out.json");
    let r = TOOL.run(&[
        "scan",
        "--cube",
        s(&bad_tile_dir),
        "--tile",
        &c.tiles[0],
        "--out",
        s(&out),
    ]);
    assert_eq!(status(&r), 1);
    assert!(!out.exists());
}

#[test]
fn s3_cube_is_checked_through_listings() {
    let c = synth(2, 5);
    let moto = Moto::start();
    let t1 = c.cube.join(&c.tiles[1]);
    let aside = c.root.join("aside");
    let newest = set_aside_newest(&t1, &aside);
    moto.upload_dir(&c.cube, "cube", "germany");
    let env = moto.gdal_env();
    let s3 = |args: &[&str]| TOOL.command().args(args).envs(env.clone()).output().unwrap();
    let inv = c.root.join("inventory.json");
    let r = s3(&["scan", "--cube", "s3://cube/germany", "--out", s(&inv)]);
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    let v = json(&inv);
    for (i, t) in c.tiles.iter().enumerate() {
        let mut recorded: Vec<(String, u64)> = v["tiles"][i]["acquisitions"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|a| {
                ["boa", "qai"].map(|p| {
                    (
                        a[p]["name"].as_str().unwrap().to_string(),
                        a[p]["size"].as_u64().unwrap(),
                    )
                })
            })
            .collect();
        recorded.sort();
        assert_eq!(recorded, files_of(&c.cube.join(t)), "{t}");
        assert!(v["tiles"][i]["acquisitions"][0]["boa"]["mtime"].as_i64().unwrap() > 1_600_000_000);
    }
    // The inventory itself may live on S3 too.
    moto.put(&inv, "cube", "maps/inventory.json");
    let r = s3(&[
        "check",
        "--cube",
        "s3://cube/germany",
        "--previous",
        "s3://cube/maps/inventory.json",
    ]);
    assert_eq!(status(&r), 3, "{}", stderr(&r));

    // One acquisition uploaded to tile 1; one object of tile 0 deleted.
    let sensor = sensor_of(&aside, &newest);
    for e in std::fs::read_dir(&aside).unwrap() {
        let e = e.unwrap();
        let key = format!("germany/{}/{}", c.tiles[1], e.file_name().to_string_lossy());
        moto.put(&e.path(), "cube", &key);
    }
    let gone = &files_of(&c.cube.join(&c.tiles[0]))[0].0;
    moto.delete("cube", &format!("germany/{}/{}", c.tiles[0], gone));
    let gone_qai = gone.replace("_BOA", "_QAI");
    let r = s3(&[
        "check",
        "--cube",
        "s3://cube/germany",
        "--previous",
        "s3://cube/maps/inventory.json",
    ]);
    // The BOA went and its QAI stayed: the acquisition is no longer there (a QAI alone is skipped).
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    assert!(gone.ends_with("_BOA.tif") && gone_qai != *gone);
    assert_eq!(
        stdout(&r),
        format!(
            "{}\tchanged\tremoved {} {}\n{}\tchanged\tadded {} {sensor}\n",
            c.tiles[0],
            iso(&gone[..8]),
            gone.split('_').nth(2).unwrap(),
            c.tiles[1],
            iso(&newest)
        )
    );
    drop(moto);
}

/// The interface as reviewed: a changed flag or help text changes tests/snapshots/help*.txt.
#[test]
fn help_is_as_reviewed() {
    assert_snapshot(env!("CARGO_MANIFEST_DIR"), "help", &TOOL.help(&[]));
    assert_snapshot(env!("CARGO_MANIFEST_DIR"), "help_scan", &TOOL.help(&["scan"]));
    assert_snapshot(env!("CARGO_MANIFEST_DIR"), "help_check", &TOOL.help(&["check"]));
}

// S3 listings through a fault-injecting proxy in front of moto (issue 20): a tile directory of
// more than one listing page (S3 lists 1000 objects a page) is listed completely or not at all.

/// A one-tile cube on moto whose tile directory spans two listing pages: 1000 empty objects named
/// after the first date sort between its Level-2 files and the later dates', so page 1 ends in the
/// padding and page 2 holds every later acquisition.
struct PagedCube {
    c: Cube,
    moto: Moto,
    /// BOA files (acquisitions) in the tile.
    acquisitions: usize,
}

fn paged_cube() -> PagedCube {
    let c = synth(1, 6);
    let moto = Moto::start();
    moto.upload_dir(&c.cube, "cube", "germany");
    let files = files_of(&c.cube.join(&c.tiles[0]));
    let first = files[0].0[..8].to_string();
    let pad: Vec<String> = (0..1000).map(|i| format!("{first}_pad{i:04}.txt")).collect();
    moto.put_empty("cube", &format!("germany/{}", c.tiles[0]), &pad);
    let acquisitions = files.iter().filter(|(n, _)| n.ends_with("_BOA.tif")).count();
    assert!(acquisitions >= 5, "{files:?}");
    PagedCube {
        c,
        moto,
        acquisitions,
    }
}

/// Fast retries: one, after 0.1 s.
const FAST_RETRY: [(&str, &str); 2] = [("GDAL_HTTP_MAX_RETRY", "1"), ("GDAL_HTTP_RETRY_DELAY", "0.1")];

/// `cube-inventory scan --cube s3://cube/germany --out <out>` with `env`.
fn scan_s3(env: &[(&str, String)], extra: &[(&str, &str)], out: &Path) -> Output {
    TOOL.command()
        .args(["scan", "--cube", "s3://cube/germany", "--out", s(out)])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .envs(extra.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn acquisitions(inv: &Path) -> Vec<Value> {
    json(inv)["tiles"][0]["acquisitions"].as_array().unwrap().clone()
}

/// What an inventory records of the tile (its time of making aside).
fn recorded(inv: &Path) -> (Value, Value) {
    let t = &json(inv)["tiles"][0];
    (t["acquisitions"].clone(), t["fingerprint"].clone())
}

#[test]
fn s3_listing_through_the_proxy_without_faults_is_the_listing_without_it() {
    use treesits_testkit::fault_proxy::FaultProxy;
    let p = paged_cube();
    let direct = p.c.root.join("direct.json");
    let r = scan_s3(&p.moto.gdal_env(), &[], &direct);
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    assert_eq!(acquisitions(&direct).len(), p.acquisitions);

    let proxy = FaultProxy::start(&p.moto, &[]);
    let via = p.c.root.join("via.json");
    let r = scan_s3(&proxy.gdal_env(), &[], &via);
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    assert_eq!(recorded(&via), recorded(&direct));
    // The tile was listed in two pages (a continuation page was asked for), twice.
    let pages: Vec<u32> = proxy.requests().iter().filter_map(|r| r.page).collect();
    assert_eq!(pages.iter().filter(|&&n| n == 2).count(), 2, "{pages:?}");
    assert_eq!(proxy.faults_injected(), 0);
}

#[test]
fn s3_listing_error_on_the_second_page_fails_naming_the_tile() {
    use treesits_testkit::fault_proxy::{Fault, FaultKind, FaultProxy};
    let p = paged_cube();
    let dir = format!("s3://cube/germany/{}", p.c.tiles[0]);
    for code in [500, 503] {
        let proxy = FaultProxy::start(&p.moto, &[Fault::new(FaultKind::Status(code), 2)]);
        let out = p.c.root.join(format!("inv{code}.json"));
        let r = scan_s3(&proxy.gdal_env(), &FAST_RETRY, &out);
        // Before the fix: exit 0 and an inventory of the first acquisition alone.
        TOOL.fails_with(&r, &format!("cannot list {dir} completely"));
        assert!(stderr(&r).contains("run again"), "{}", stderr(&r));
        assert!(!out.exists(), "no inventory from half a listing");
        assert!(proxy.faults_injected() >= 2, "{:?}", proxy.requests());
    }
    // A fault that goes away is retried: the whole tile, as without faults.
    let proxy = FaultProxy::start(&p.moto, &[Fault::new(FaultKind::Status(503), 2).times(1)]);
    let out = p.c.root.join("retried.json");
    let r = scan_s3(&proxy.gdal_env(), &FAST_RETRY, &out);
    assert_eq!(status(&r), 0, "{}", stderr(&r));
    assert_eq!(acquisitions(&out).len(), p.acquisitions);
    assert_eq!(proxy.faults_injected(), 1);
}

#[test]
fn s3_listing_stall_fails_within_the_timeout_instead_of_hanging() {
    use treesits_testkit::fault_proxy::{Fault, FaultKind, FaultProxy};
    let p = paged_cube();
    let proxy = FaultProxy::start(&p.moto, &[Fault::new(FaultKind::Stall, 2)]);
    let out = p.c.root.join("inv.json");
    let started = std::time::Instant::now();
    let r = scan_s3(
        &proxy.gdal_env(),
        &[FAST_RETRY[0], FAST_RETRY[1], ("GDAL_HTTP_TIMEOUT", "2")],
        &out,
    );
    let took = started.elapsed();
    TOOL.fails_with(
        &r,
        &format!("cannot list s3://cube/germany/{} completely", p.c.tiles[0]),
    );
    // Two attempts of two listings, each cut at 2 s: far below the proxy's 120 s stall.
    assert!(took < std::time::Duration::from_secs(40), "took {took:?}");
    assert!(!out.exists());
}

#[test]
fn s3_listing_truncated_or_corrupted_never_gives_a_different_inventory() {
    use treesits_testkit::fault_proxy::{Fault, FaultKind, FaultProxy};
    let p = paged_cube();
    let dir = format!("s3://cube/germany/{}", p.c.tiles[0]);
    let direct = p.c.root.join("direct.json");
    assert_eq!(status(&scan_s3(&p.moto.gdal_env(), &[], &direct)), 0);
    for kind in [FaultKind::Truncate, FaultKind::Garble, FaultKind::WrongSizes] {
        // Every time: an error, never an inventory.
        let proxy = FaultProxy::start(&p.moto, &[Fault::new(kind, 2)]);
        let out = p.c.root.join("bad.json");
        let r = scan_s3(&proxy.gdal_env(), &FAST_RETRY, &out);
        TOOL.fails_with(&r, &format!("cannot list {dir} completely"));
        assert!(!out.exists(), "{kind:?}");
        assert!(proxy.faults_injected() >= 1, "{kind:?}");
        drop(proxy);
        // Once: retried, and then the same inventory as without faults.
        let proxy = FaultProxy::start(&p.moto, &[Fault::new(kind, 2).times(1)]);
        let out = p.c.root.join(format!("once-{kind:?}.json"));
        let r = scan_s3(&proxy.gdal_env(), &FAST_RETRY, &out);
        assert_eq!(status(&r), 0, "{kind:?}: {}", stderr(&r));
        assert_eq!(recorded(&out), recorded(&direct), "{kind:?}");
        assert_eq!(proxy.faults_injected(), 1, "{kind:?}");
    }
}
