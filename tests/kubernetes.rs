//! packaging/kubernetes: no cluster runs here, so the manifest is read
//! (PyYAML turns it into JSON) and held to what portwatch needs: every
//! capability `portwatch doctor` checks for and nothing privileged, every
//! host path it reads mounted read-only, the host's pid namespace, probes
//! on /healthz and /readyz and a port a ServiceMonitor can select, flags
//! the daemon has, and the example rules.

use std::process::Command;

use serde_json::Value;

use crate::support::BIN;

fn manifest(name: &str) -> Vec<Value> {
    let path = format!(
        "{}/../packaging/kubernetes/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
            &path,
        ])
        .output()
        .expect("python3 with PyYAML (python3-yaml)");
    assert!(
        out.status.success(),
        "{name} does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn the_daemonset_grants_what_the_doctor_checks_and_no_more() {
    let docs = manifest("portwatch.yaml");
    let ds = kind(&docs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostPID"], true,
        "owners are named from the host's /proc"
    );
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_ne!(sc["privileged"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let mut added: Vec<String> = sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("CAP_{}", c.as_str().unwrap()))
        .collect();
    added.sort();
    let mut needed: Vec<String> = portwatch::doctor::CAPABILITIES
        .iter()
        .map(|c| c.to_string())
        .collect();
    needed.sort();
    assert_eq!(added, needed);
    // Every host path, mounted read-only from the host.
    let volumes = pod["volumes"].as_array().unwrap();
    let mounts = c["volumeMounts"].as_array().unwrap();
    for path in portwatch::doctor::HOST_PATHS
        .iter()
        .chain(&["/sys/fs/bpf", "/var/log/pods"])
    {
        let m = mounts
            .iter()
            .find(|m| m["mountPath"] == *path)
            .unwrap_or_else(|| panic!("{path} is not mounted"));
        assert_eq!(m["readOnly"], true, "{path}");
        let v = volumes.iter().find(|v| v["name"] == m["name"]).unwrap();
        assert_eq!(v["hostPath"]["path"], *path, "{path} is not the host's");
    }
    // Probes and a named port for a ServiceMonitor.
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["ports"][0]["name"], "metrics");
    let svc = kind(&docs, "Service");
    assert_eq!(svc["spec"]["ports"][0]["name"], "metrics");
    let monitor = &manifest("servicemonitor.yaml")[0];
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    // Each flag is one the daemon has; the OTLP endpoint comes from the
    // ConfigMap.
    let help = Command::new(BIN)
        .args(["daemon", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "{flag}"
        );
    }
    let otlp = args.iter().position(|a| *a == "--otlp").unwrap();
    assert_eq!(args[otlp + 1], "$(OTLP_ENDPOINT)");
    let config = kind(&docs, "ConfigMap");
    assert!(
        config["data"]["OTLP_ENDPOINT"]
            .as_str()
            .unwrap()
            .starts_with("http")
    );
    let example = include_str!("../examples/alerts.example.json");
    let rules: Value =
        serde_json::from_str(config["data"]["alerts.json"].as_str().unwrap()).unwrap();
    assert_eq!(rules, serde_json::from_str::<Value>(example).unwrap());
    // The header with its secret comes from the environment, never argv.
    assert!(!args.iter().any(|a| a.starts_with("--otlp-header")));
}

#[test]
fn the_image_is_built_from_the_debian_package() {
    let file = include_str!("../packaging/kubernetes/Containerfile");
    assert!(file.contains("cargo xtask package"), "{file}");
    assert!(file.contains("portwatch.deb"), "{file}");
    let collector = manifest("otel-collector.yaml");
    let pipelines = &collector[0]["service"]["pipelines"]["logs"];
    assert!(
        pipelines["receivers"]
            .as_array()
            .unwrap()
            .contains(&"otlp".into())
    );
}
