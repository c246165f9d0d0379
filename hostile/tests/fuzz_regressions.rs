//! Replays every saved fuzz crash (`fuzz/regressions/<target>/*`) and every seed
//! (`fuzz/seeds/<target>/*`) through the same invariant checks the fuzz targets run, so
//! a crash found once stays fixed under plain `cargo test`.
//!
//! A crash found by `fuzz/smoke.sh` (or `cargo fuzz run`) lands in
//! `fuzz/artifacts/<target>/crash-*`; copy it to `fuzz/regressions/<target>/` and it is
//! replayed here from then on.

use std::fs;
use std::path::{Path, PathBuf};

use duplex_hostile::check::TARGETS;
use duplex_hostile::seeds::seeds;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Runs every file of `fuzz/<kind>/<target>/` through its target's checks; returns how
/// many ran.
fn replay(kind: &str) -> usize {
    let mut count = 0;
    for target in TARGETS {
        let dir = fuzz_dir().join(kind).join(target.name);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if !path.is_file() || path.file_name().is_some_and(|n| n == ".gitkeep") {
                continue;
            }
            let data = fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| (target.run)(&data));
            assert!(
                result.is_ok(),
                "{} failed its invariants on {}",
                target.name,
                path.display()
            );
            count += 1;
        }
    }
    count
}

#[test]
fn every_saved_crash_passes_its_invariants() {
    let n = replay("regressions");
    println!("replayed {n} regression inputs");
}

#[test]
fn every_seed_passes_its_invariants() {
    let n = replay("seeds");
    assert!(n >= seeds().len(), "seed files missing: {n} found");
}

/// The committed seeds are what `duplex_hostile::seeds` generates. With
/// `HOSTILE_WRITE_SEEDS=1` the files are (re)written instead.
#[test]
fn committed_seeds_match_the_generator() {
    let write = std::env::var_os("HOSTILE_WRITE_SEEDS").is_some();
    for seed in seeds() {
        let path = fuzz_dir().join("seeds").join(seed.target).join(seed.name);
        if write {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &seed.bytes).unwrap();
        } else {
            let committed = fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; run with HOSTILE_WRITE_SEEDS=1 to write the seeds",
                    path.display()
                )
            });
            assert_eq!(committed, seed.bytes, "{} is stale", path.display());
        }
    }
}

/// The generated seeds pass the checks directly too (before they are written).
#[test]
fn generated_seeds_pass_their_invariants() {
    for seed in seeds() {
        let target = TARGETS
            .iter()
            .find(|t| t.name == seed.target)
            .unwrap_or_else(|| panic!("no target {}", seed.target));
        (target.run)(&seed.bytes);
    }
}
