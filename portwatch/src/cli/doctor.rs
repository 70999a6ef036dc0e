//! `portwatch doctor`: everything portwatch needs, checked in order; the
//! first blocker named with its fix (exit 1), or exit 0.

use portwatch::{
    Backend, Engine, EngineConfig,
    doctor::{Check, Status, blocker, evaluate},
    host,
};

use crate::sink::Sink;

/// Loads, attaches and detaches every program, when nothing before
/// blocks it.
fn programs() -> Check {
    let config = EngineConfig {
        backend: Backend::Ebpf,
        resync_interval: None,
        ..EngineConfig::default()
    };
    match Engine::start(&config) {
        Ok((engine, _)) => {
            let mut missing = Vec::new();
            if let Some(why) = engine.listen_callback_missing() {
                missing.push(format!("listen confirmation: {why}"));
            }
            if let Some(why) = engine.udp_missing() {
                missing.push(format!("UDP: {why}"));
            }
            drop(engine);
            Check {
                check: "programs",
                status: if missing.is_empty() {
                    Status::Ok
                } else {
                    Status::Warn
                },
                detail: if missing.is_empty() {
                    "every program loads, attaches and detaches".into()
                } else {
                    format!("loaded and attached, without {}", missing.join("; "))
                },
                fix: None,
            }
        }
        Err(e) => Check {
            check: "programs",
            status: Status::Fail,
            detail: e.to_string(),
            fix: Some(
                "see the checks above; `RUST_LOG=debug portwatch doctor` shows the kernel's log"
                    .into(),
            ),
        },
    }
}

pub async fn run(json: bool) -> anyhow::Result<()> {
    let mut checks = evaluate(&host::doctor_facts());
    if blocker(&checks).is_none() {
        // The engine needs a runtime: this runs inside one.
        checks.push(programs());
    }
    let mut sink = Sink::new(json);
    let first = blocker(&checks).cloned();
    if json {
        sink.line(
            &serde_json::json!({
                "checks": checks,
                "blocker": first.as_ref().map(|b| b.check),
            })
            .to_string(),
        )?;
    } else {
        for c in &checks {
            let status = match c.status {
                Status::Ok => "ok",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
                // A status a newer library adds: shown as a failure.
                _ => "FAIL",
            };
            sink.line(&format!("{status:<5} {:<26} {}", c.check, c.detail))?;
            if let Some(fix) = &c.fix {
                sink.line(&format!("{:<32} fix: {fix}", ""))?;
            }
        }
        match &first {
            None => sink.line("portwatch can watch here with eBPF.")?,
            Some(b) => sink.line(&format!(
                "blocker: {}: {}. Fix: {}",
                b.check,
                b.detail,
                b.fix.as_deref().unwrap_or("none known")
            ))?,
        }
    }
    sink.flush()?;
    match first {
        None => Ok(()),
        Some(b) => anyhow::bail!("{} blocks eBPF here", b.check),
    }
}
