//! What a client of the event socket asks for, in the one line it sends
//! first: `{}` for everything, or any of
//! `{"pid":1234,"proto":"tcp","scope":"local","netns":4026531840}`, and
//! `"format":"ocsf"` for OCSF records instead of portwatch's lines.

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
    /// `json` (portwatch's lines, the default) or `ocsf`: ports, exposure
    /// changes, alerts and drifts as OCSF records; the socket's own lines
    /// (`ready`, `lost`, `resync`, notices, `error`) stay portwatch's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["json", "ocsf", null]))]
    pub format: Option<String>,
}

/// A client's request, parsed: what it wants, and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subscription {
    pub filter: Filter,
    /// OCSF records instead of portwatch's lines.
    pub ocsf: bool,
}

/// [`parse_request`], with the format asked for.
pub fn parse_subscription(line: &str) -> Result<Subscription, String> {
    let filter = parse_request(line)?;
    // Parsed once more: the filter's parse took the same text.
    let wire: Request = serde_json::from_str(line.trim()).map_err(|e| e.to_string())?;
    let ocsf = match wire.format.as_deref() {
        None | Some("json") => false,
        Some("ocsf") => true,
        Some(other) => {
            return Err(format!(
                "format \"{}\" is neither json nor ocsf",
                crate::safe_text::safe_str(other)
            ));
        }
    };
    Ok(Subscription { filter, ocsf })
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
        format: None,
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
        let s = parse_subscription(r#"{"format":"ocsf","proto":"udp"}"#).unwrap();
        assert!(s.ocsf && s.filter.proto == Some(Proto::Udp));
        assert!(!parse_subscription("{}").unwrap().ocsf);
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
            (
                r#"{"format":"cef"}"#,
                "format \"cef\" is neither json nor ocsf",
            ),
        ] {
            let e = parse_subscription(line).unwrap_err();
            assert!(e.contains(expected), "{line}: {e}");
            assert!(!e.contains('\n') && !e.contains('\u{1b}'), "{e}");
        }
    }
}
