//! `portwatch alerts`: every malformed file gets its own clear message, a
//! non-zero exit, and is left byte for byte as it was.

use std::{fs, path::PathBuf, process::Command};

fn tmpdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portwatch-alerts-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn rule(id: &str, condition: &str) -> String {
    format!(
        r#"{{"id":"{id}","name":"n","condition":{condition},"enabled":true,"severity":"Info","cooldown_seconds":5}}"#
    )
}

fn file(rules: &[String]) -> String {
    format!(r#"{{"rules":[{}]}}"#, rules.join(","))
}

const PORT22: &str = r#"{"type":"PortOpened","params":{"port":22}}"#;

#[test]
fn malformed_files_each_get_a_specific_message() {
    let dir = tmpdir("bad");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", b"".to_vec(), "is empty"),
        ("blank", b"  \n\t ".to_vec(), "is empty"),
        ("bom", [b"\xef\xbb\xbf".as_slice(), br#"{"rules":[]}"#].concat(), "byte order mark"),
        ("not utf-8", b"{\"rules\":[\xff]}".to_vec(), "not UTF-8"),
        ("truncated", br#"{"rules":[{"id":"a","#.to_vec(), ":1:"),
        ("not an object", b"\n [1,2]".to_vec(), ":2:2: the top level must be an object"),
        ("no rules key", b"{}".to_vec(), "missing field `rules`"),
        ("rules not an array", br#"{"rules":{}}"#.to_vec(), "rules: invalid type: map"),
        ("trailing garbage", br#"{"rules":[]} x"#.to_vec(), "trailing characters"),
        (
            "missing enabled",
            br#"{"rules":[{"id":"a","name":"n","condition":{"type":"PortOpened","params":{"port":1}},"severity":"Info","cooldown_seconds":5}]}"#.to_vec(),
            "rules[0]: missing field `enabled`",
        ),
        ("unknown condition", file(&[rule("a", r#"{"type":"PortOpen","params":{"port":1}}"#)]).into_bytes(), "unknown variant `PortOpen`"),
        ("port as string", file(&[rule("a", r#"{"type":"PortOpened","params":{"port":"22"}}"#)]).into_bytes(), "rules[0].condition.params.port: invalid type: string"),
        ("negative port", file(&[rule("a", r#"{"type":"PortOpened","params":{"port":-1}}"#)]).into_bytes(), "invalid value: integer `-1`"),
        ("port 70000", file(&[rule("a", r#"{"type":"PortOpened","params":{"port":70000}}"#)]).into_bytes(), "rule `a`: condition.params.port is 70000, outside 0-65535"),
        ("reversed range", file(&[rule("r", r#"{"type":"PortRangeActivity","params":{"start_port":9000,"end_port":8000}}"#)]).into_bytes(), "rule `r`: condition.params.end_port (8000) is below start_port (9000)"),
        ("lowercase severity", file(&[rule("a", PORT22)]).replace("\"Info\"", "\"info\"").into_bytes(), "unknown variant `info`"),
        ("cooldown 0", file(&[rule("c", PORT22)]).replace("\"cooldown_seconds\":5", "\"cooldown_seconds\":0").into_bytes(), "rule `c`: cooldown_seconds must be greater than 0"),
        ("duplicate ids", file(&[rule("d", PORT22), rule("d", PORT22)]).into_bytes(), "rule id `d` is used twice (rules[0] and rules[1])"),
        (
            "unclosed look-ahead",
            file(&[rule("x", r#"{"type":"ExternalConnection","params":{"ip_pattern":"^(?!10\\.","exclude_private":true}}"#)]).into_bytes(),
            "rule `x`: condition.params.ip_pattern is not a valid regex",
        ),
        (
            "bad regex",
            file(&[rule("y", r#"{"type":"ProcessCpuThreshold","params":{"process_pattern":"(node","threshold_percent":50.0}}"#)]).into_bytes(),
            "rule `y`: condition.params.process_pattern is not a valid regex",
        ),
        ("unknown params key", file(&[rule("a", r#"{"type":"PortOpened","params":{"port":1,"host":"x"}}"#)]).into_bytes(), "unknown field `host`"),
        ("missing params", file(&[rule("a", r#"{"type":"PortOpened"}"#)]).into_bytes(), "missing field `params`"),
        ("unknown top-level key", br#"{"rules":[],"rulez":[]}"#.to_vec(), "unknown field `rulez`"),
        ("bad known process", br#"{"rules":[],"known_processes":["(x"]}"#.to_vec(), "known_processes[0] is not a valid regex"),
        ("threshold not a number", file(&[rule("t", r#"{"type":"ProcessMemoryThreshold","params":{"process_pattern":"x","threshold_mb":1.5}}"#)]).into_bytes(), "invalid type: floating point"),
    ];
    assert!(cases.len() >= 20);
    for (i, (what, bytes, expected)) in cases.iter().enumerate() {
        let path = dir.join(format!("case{i}.json"));
        fs::write(&path, bytes).unwrap();
        let out = Command::new(crate::support::BIN)
            .args(["alerts", "validate"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        assert!(
            err.contains(expected),
            "{what}: expected {expected:?} in {err:?}"
        );
        assert!(
            err.contains(&path.display().to_string()),
            "{what}: names the file: {err}"
        );
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert_eq!(&fs::read(&path).unwrap(), bytes, "{what}: the file changed");
    }
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_example_file_is_valid() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/alerts.example.json"
    );
    let out = Command::new(crate::support::BIN)
        .args(["alerts", "validate", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid, 7 rules"));
}

fn with_home(home: &PathBuf, args: &[&str]) -> std::process::Output {
    Command::new(crate::support::BIN)
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("xdg"))
        .output()
        .unwrap()
}

#[test]
fn path_prefers_canonical_then_legacy() {
    let home = tmpdir("path");
    let canonical = home.join("xdg/portwatch/alerts.json");
    let legacy = home.join(".config/portwatch/alerts.json");
    let path_of = || {
        String::from_utf8_lossy(&with_home(&home, &["alerts", "path"]).stdout)
            .trim()
            .to_string()
    };
    assert_eq!(
        path_of(),
        canonical.display().to_string(),
        "neither exists: where a new one goes"
    );
    fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    fs::write(&legacy, r#"{"rules":[]}"#).unwrap();
    assert_eq!(
        path_of(),
        legacy.display().to_string(),
        "only the legacy one exists"
    );
    fs::create_dir_all(canonical.parent().unwrap()).unwrap();
    fs::write(&canonical, r#"{"rules":[]}"#).unwrap();
    assert_eq!(path_of(), canonical.display().to_string());
    fs::remove_dir_all(home).unwrap();
}

#[test]
fn init_refuses_to_overwrite_and_keeps_a_backup_when_forced() {
    let home = tmpdir("init");
    let canonical = home.join("xdg/portwatch/alerts.json");
    assert!(with_home(&home, &["alerts", "init"]).status.success());
    let example = fs::read(&canonical).unwrap();
    fs::write(&canonical, b"{ broken").unwrap();
    let out = with_home(&home, &["alerts", "init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(fs::read(&canonical).unwrap(), b"{ broken", "not replaced");
    assert!(
        with_home(&home, &["alerts", "init", "--force"])
            .status
            .success()
    );
    assert_eq!(fs::read(&canonical).unwrap(), example);
    assert_eq!(
        fs::read(home.join("xdg/portwatch/alerts.json.bak")).unwrap(),
        b"{ broken"
    );
    fs::remove_dir_all(home).unwrap();
}
