//! `portwatch alerts validate | path | init`.

use portwatch::rules::store;

use crate::{args::AlertsCommand, sink::Sink};

pub fn run(cmd: AlertsCommand) -> anyhow::Result<()> {
    let mut sink = Sink::new(false);
    match cmd {
        AlertsCommand::Validate { file } => {
            let path = match file {
                Some(p) => p,
                None => store::read_path()?,
            };
            let rules = store::load(&path)?.file.rules;
            let enabled = rules.iter().filter(|r| r.enabled).count();
            sink.line(&format!(
                "{}: valid, {} rules ({enabled} enabled)",
                path.display(),
                rules.len()
            ))?;
        }
        AlertsCommand::Path => sink.line(&store::read_path()?.display().to_string())?,
        AlertsCommand::Init { force } => {
            let path = store::canonical_path()?;
            store::init(&path, force)?;
            sink.line(&format!("wrote the example rules to {}", path.display()))?;
        }
    }
    sink.flush()?;
    Ok(())
}
