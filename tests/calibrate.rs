//! Calibration: measured on this CPU, saved as JSON, loaded back (by path
//! or through `HOTCALL_CALIBRATION` on first use), bad files refused
//! clearly.

use std::process::Command;

use hotcall::calibrate::{self, Calibration, CalibrationSource};

#[test]
fn a_measurement_has_every_cost_and_passes_its_own_checks() {
    let c = calibrate::measure();
    assert_eq!(c.source, CalibrationSource::Measured);
    assert_eq!(c.hit_ns.len(), 8, "{c}");
    for v in [
        c.indirect_ns,
        c.indirect_mispredicted_ns,
        c.retpoline_ns,
        c.compare_mispredict_ns,
        c.miss_ns,
        c.bypass_ns,
    ]
    .iter()
    .chain(&c.hit_ns)
    {
        assert!(v.is_finite() && *v > 0.0, "{c}");
    }
    assert!(c.indirect_mispredicted_ns >= c.indirect_ns, "{c}");
    // Sanitizing a sanitized calibration changes nothing.
    assert_eq!(c.clone().sanitized(), c);
    assert!(c.took_us > 0);
    assert!(c.to_string().contains("thunk hit, slot 7"), "{c}");
}

#[test]
fn saved_calibrations_load_and_bad_files_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("hotcall-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = Calibration::defaults();
    c.retpoline_ns = 20.0;
    let good = dir.join("good.json");
    std::fs::write(&good, c.to_json()).unwrap();
    let back = calibrate::load(&good).unwrap();
    assert_eq!(back.retpoline_ns, 20.0);
    assert!(matches!(back.source, CalibrationSource::Loaded(ref p) if p.ends_with("good.json")));

    let e = calibrate::load(&dir.join("missing.json")).unwrap_err();
    assert!(e.contains("missing.json"), "{e}");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "not json").unwrap();
    let e = calibrate::load(&bad).unwrap_err();
    assert!(e.contains("bad.json: not a calibration"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// In a child process (the calibration is made once per process):
/// `HOTCALL_CALIBRATION` names the file `current()` loads instead of
/// measuring.
#[test]
fn the_environment_injects_a_calibration() {
    if let Some(want) = std::env::var_os("HOTCALL_TEST_EXPECT_RETPOLINE") {
        let c = calibrate::current();
        let want: f64 = want.to_str().unwrap().parse().unwrap();
        assert_eq!(c.retpoline_ns, want, "{c}");
        assert!(matches!(c.source, CalibrationSource::Loaded(_)), "{c}");
        return;
    }
    let file = std::env::temp_dir().join(format!("hotcall-inject-{}.json", std::process::id()));
    let mut c = Calibration::defaults();
    c.retpoline_ns = 33.5;
    std::fs::write(&file, c.to_json()).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_environment_injects_a_calibration",
            "--nocapture",
        ])
        .env("HOTCALL_CALIBRATION", &file)
        .env("HOTCALL_TEST_EXPECT_RETPOLINE", "33.5")
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

#[test]
fn the_command_prints_json_that_loads_back() {
    let out = Command::new(env!("CARGO_BIN_EXE_hotcall"))
        .args(["calibrate", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let c = Calibration::from_json(&text, "stdout").unwrap();
    assert_eq!(c.hit_ns.len(), 8);
    assert!(text.contains("\"spectre_v2\""), "{text}");
}
