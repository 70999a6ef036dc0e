//! What a client of the event socket asks for, in the one line it sends
//! first: `{}` for everything, or any of
//! `{"pid":1234,"proto":"tcp","scope":"local","netns":4026531840}`.

use serde::{Deserialize, Serialize};

use crate::{
    event::Proto,
    filter::{Filter, Scope},
};

/// The longest first line a client may send.
pub const MAX_REQUEST_BYTES: usize = 4096;

// Its keys are written in this order, the order `request_line` has always
// written them in; each is left out when not asked for.
/// The one line a client sends first: `{}` for everything.
#[derive(Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "portwatch event socket request")]
pub struct Request {
    /// Only this network namespace (its inode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<u64>,
    /// Only this process and its descendants.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub pid: Option<u32>,
    /// `tcp`, `udp` or `all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["tcp", "udp", "all", null]))]
    pub proto: Option<String>,
    /// `all` or `local`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["all", "local", null]))]
    pub scope: Option<String>,
}

/// Parses a client's request into its filter, or one sentence saying what
/// is wrong with it.
pub fn parse_request(line: &str) -> Result<Filter, String> {
    let wire: Request = serde_json::from_str(line.trim()).map_err(|e| {
        // serde quotes the client's own text (an unknown field name).
        format!(
            "the request is not a filter object: {}",
            crate::safe_text::safe_str(&e.to_string())
        )
    })?;
    let proto = match wire.proto.as_deref() {
        None | Some("all") => None,
        Some("tcp") => Some(Proto::Tcp),
        Some("udp") => Some(Proto::Udp),
        Some(other) => {
            return Err(format!(
                "proto \"{}\" is none of tcp, udp, all",
                crate::safe_text::safe_str(other)
            ));
        }
    };
    let scope = match wire.scope.as_deref() {
        None | Some("all") => Scope::All,
        Some("local") => Scope::Local,
        Some(other) => {
            return Err(format!(
                "scope \"{}\" is neither all nor local",
                crate::safe_text::safe_str(other)
            ));
        }
    };
    if wire.pid == Some(0) {
        return Err("pid 0 is no process".into());
    }
    Ok(Filter {
        scope,
        netns: wire.netns,
        pid: wire.pid,
        proto,
    })
}

/// The request line for `filter` (what `watch --connect` sends).
pub fn request_line(filter: &Filter) -> String {
    super::to_json(&Request {
        netns: filter.netns,
        pid: filter.pid,
        proto: filter.proto.map(|p| p.as_str().to_string()),
        scope: (filter.scope == Scope::Local).then(|| "local".to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips() {
        let f = Filter {
            scope: Scope::Local,
            netns: Some(42),
            pid: Some(7),
            proto: Some(Proto::Udp),
        };
        assert_eq!(parse_request(&request_line(&f)).unwrap(), f);
        assert_eq!(parse_request("{}").unwrap(), Filter::default());
        assert_eq!(request_line(&Filter::default()), "{}");
    }

    #[test]
    fn bad_requests_get_one_sentence() {
        for (line, expected) in [
            ("", "not a filter object"),
            ("[1]", "not a filter object"),
            (r#"{"pid":-1}"#, "not a filter object"),
            (r#"{"pids":[1]}"#, "unknown field `pids`"),
            (
                r#"{"proto":"sctp"}"#,
                "proto \"sctp\" is none of tcp, udp, all",
            ),
            (r#"{"scope":"\u001b[2J"}"#, "scope \"\\x1b[2J\" is neither"),
            (r#"{"\u001b[2J":1}"#, "unknown field `\\x1b[2J`"),
            (r#"{"pid":0}"#, "pid 0 is no process"),
        ] {
            let e = parse_request(line).unwrap_err();
            assert!(e.contains(expected), "{line}: {e}");
            assert!(!e.contains('\n') && !e.contains('\u{1b}'), "{e}");
        }
    }
}
