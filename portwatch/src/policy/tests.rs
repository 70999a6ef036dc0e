use std::{net::IpAddr, sync::Arc};

use chrono::{TimeZone as _, Utc};

use super::{
    Policy,
    drift::{DriftKind, Drifts, check},
    learn::{glob_literal, learn},
};
use crate::{
    container::{Container, Runtime},
    event::{Listener, Proto},
    owner::OwnerContext,
};

fn ts() -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000, 0)
        .single()
        .unwrap_or_default()
}

fn listener(exe: &str, port: u16, addr: &str, pid: u32) -> Listener {
    Listener {
        pid,
        uid: 0,
        comm: exe.rsplit('/').next().unwrap_or_default().into(),
        context: Some(Arc::new(OwnerContext {
            exe: Some(exe.into()),
            ..OwnerContext::default()
        })),
        ..Listener::new(Proto::Tcp, addr.parse::<IpAddr>().unwrap(), port)
    }
}

fn policy(json: &str) -> Policy {
    Policy::parse(json.as_bytes()).unwrap()
}

const SSH: &str = r#"{"version":1,"tags":["PCI-DSS-10.2.7"],"expected":[
  {"name":"ssh","exe":"/usr/sbin/sshd","port":22,"tags":["remote-access"]},
  {"exe":"/usr/bin/*","port":"8000-8999","scope":"loopback","optional":true}
]}"#;

#[test]
fn entries_match_on_every_field_given() {
    let p = policy(SSH);
    assert_eq!(
        p.matching(&listener("/usr/sbin/sshd", 22, "0.0.0.0", 1)),
        Some(0)
    );
    assert_eq!(
        p.matching(&listener("/usr/sbin/sshd", 23, "0.0.0.0", 1)),
        None
    );
    assert_eq!(p.matching(&listener("/tmp/sshd", 22, "0.0.0.0", 1)), None);
    assert_eq!(
        p.matching(&listener("/usr/bin/node", 8080, "127.0.0.1", 1)),
        Some(1)
    );
    // `*` stays within one directory; scope is checked.
    assert_eq!(
        p.matching(&listener("/usr/bin/x/node", 8080, "127.0.0.1", 1)),
        None
    );
    assert_eq!(
        p.matching(&listener("/usr/bin/node", 8080, "0.0.0.0", 1)),
        None
    );
    // No executable known: an exe entry cannot vouch for it.
    let mut unknown = listener("/usr/sbin/sshd", 22, "0.0.0.0", 1);
    unknown.context = None;
    assert_eq!(p.matching(&unknown), None);
}

#[test]
fn units_containers_users_and_exposure_match() {
    let p = policy(
        r#"{"version":1,"expected":[
          {"unit":"nginx.service","proto":"tcp"},
          {"container":"web-*","exposure":"loopback"},
          {"port":53,"user":"0","proto":"udp"}
        ]}"#,
    );
    let mut l = listener("/usr/sbin/nginx", 80, "0.0.0.0", 1);
    l.container = Some(Container {
        runtime: Runtime::Service,
        id: "nginx.service".into(),
        name: None,
    });
    assert_eq!(p.matching(&l), Some(0));
    l.container = Some(Container {
        runtime: Runtime::Docker,
        id: "ab".repeat(32),
        name: Some("web-1".into()),
    });
    assert_eq!(p.matching(&l), None, "exposure not judged");
    l.exposure = Some(crate::event::Exposure::Loopback);
    assert_eq!(p.matching(&l), Some(1));
    let mut dns = listener("/usr/sbin/named", 53, "0.0.0.0", 1);
    dns.proto = Proto::Udp;
    assert_eq!(p.matching(&dns), Some(2));
    dns.uid = 1000;
    assert_eq!(p.matching(&dns), None);
}

#[test]
fn bad_policies_say_where_and_why() {
    let err = |json: &str| Policy::parse(json.as_bytes()).unwrap_err();
    assert!(err(r#"{"version":2,"expected":[]}"#).contains("version 2"));
    assert!(err(r#"{"version":1,"expected":[{}]}"#).contains("at expected[0]: an entry needs"));
    assert!(err(r#"{"version":1,"expected":[{"port":"9-1"}]}"#).contains("ends before it starts"));
    assert!(err(r#"{"version":1,"expected":[{"port":"x"}]}"#).contains("no port range"));
    assert!(err(r#"{"version":1,"expected":[{"port":70000}]}"#).contains("expected[0]"));
    assert!(
        err(r#"{"version":1,"expected":[{"port":1,"colour":"red"}]}"#).contains("unknown field")
    );
    assert!(err(r#"{"version":1,"expected":[{"exe":"[a"}]}"#).contains("no glob"));
    assert!(
        err(r#"{"version":1,"expected":[{"port":1,"user":"no-such-user-here"}]}"#)
            .contains("no user")
    );
    assert!(err(r#"{"version":1,"expected":[{"port":1,"tags":["a\nb"]}]}"#).contains("tag"));
    assert!(err("[").contains("EOF"));
}

#[test]
fn drifts_follow_opens_and_closes() {
    let mut d = Drifts::new(policy(SSH));
    let sshd = listener("/usr/sbin/sshd", 22, "0.0.0.0", 10);
    let nc = listener("/usr/bin/nc", 4444, "0.0.0.0", 11);
    assert!(d.opened(&sshd, ts()).is_empty());
    // Nothing is reported before the baseline is in; then all at once.
    assert!(d.ready(ts()).is_empty());
    let opened = d.opened(&nc, ts());
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].kind, DriftKind::Unexpected);
    assert_eq!(opened[0].tags, vec!["PCI-DSS-10.2.7".to_string()]);
    assert!(d.is_unexpected(&nc));
    let missing = d.closed(&sshd, ts());
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].kind, DriftKind::Missing);
    assert_eq!(
        missing[0].entry.as_ref().and_then(|e| e.name.as_deref()),
        Some("ssh")
    );
    assert_eq!(
        missing[0].tags,
        vec!["PCI-DSS-10.2.7".to_string(), "remote-access".into()]
    );
    assert_eq!(d.counts(), (1, 1));
    // Back to expected, both ways.
    let back = d.opened(&sshd, ts());
    assert_eq!(back[0].kind, DriftKind::Expected);
    assert!(back[0].entry.is_some());
    let gone = d.closed(&nc, ts());
    assert_eq!(gone[0].kind, DriftKind::Expected);
    assert!(gone[0].entry.is_none());
    assert_eq!(d.counts(), (0, 0));
}

#[test]
fn several_sockets_of_one_owner_drift_once() {
    let mut d = Drifts::new(policy(SSH));
    d.ready(ts());
    let sshd = listener("/usr/sbin/sshd", 22, "0.0.0.0", 10);
    let v6 = listener("/usr/sbin/sshd", 22, "::", 10);
    assert_eq!(d.opened(&sshd, ts()).len(), 1, "back from missing");
    assert!(d.opened(&sshd, ts()).is_empty(), "SO_REUSEPORT");
    assert!(d.opened(&v6, ts()).is_empty());
    assert!(d.closed(&sshd, ts()).is_empty());
    assert!(d.closed(&v6, ts()).is_empty());
    assert_eq!(d.closed(&sshd, ts())[0].kind, DriftKind::Missing);
    // A close nobody opened changes nothing.
    assert!(d.closed(&sshd, ts()).is_empty());
}

#[test]
fn a_new_policy_reports_what_changed() {
    let mut d = Drifts::new(policy(SSH));
    let nc = listener("/usr/bin/nc", 4444, "0.0.0.0", 11);
    d.opened(&nc, ts());
    let first = d.ready(ts());
    assert_eq!(first.len(), 2, "nc unexpected, ssh missing: {first:?}");
    let now = d.replace(
        policy(r#"{"version":1,"expected":[{"exe":"/usr/bin/nc","port":4444},{"port":80}]}"#),
        ts(),
    );
    let kinds: Vec<_> = now
        .iter()
        .map(|d| (d.kind, d.entry.clone().and_then(|e| e.port)))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (DriftKind::Expected, Some(super::PortSpec::One(4444))),
            (DriftKind::Missing, Some(super::PortSpec::One(80))),
            (DriftKind::Expected, Some(super::PortSpec::One(22))),
        ]
    );
    assert!(
        d.replace(d.policy().clone(), ts()).is_empty(),
        "the same policy again"
    );
}

#[test]
fn exposure_changes_match_again() {
    let mut d = Drifts::new(policy(
        r#"{"version":1,"expected":[{"port":80,"exposure":"loopback"}]}"#,
    ));
    let mut l = listener("/usr/bin/web", 80, "127.0.0.1", 5);
    l.exposure = Some(crate::event::Exposure::Loopback);
    d.opened(&l, ts());
    assert!(d.ready(ts()).is_empty());
    l.exposure = Some(crate::event::Exposure::Reachable {
        reachable_via: vec!["eth0".into()],
    });
    let kinds: Vec<_> = d.changed(&l, ts()).into_iter().map(|d| d.kind).collect();
    assert_eq!(kinds, vec![DriftKind::Missing, DriftKind::Unexpected]);
}

#[test]
fn learned_policies_expect_what_was_seen() {
    let mut ls = vec![
        listener("/usr/sbin/sshd", 22, "0.0.0.0", 1),
        listener("/usr/sbin/sshd", 22, "::", 1),
        listener("/opt/app[1]/srv", 8080, "127.0.0.1", 2),
        listener("/usr/bin/dev", 40001, "127.0.0.1", 3),
        listener("/usr/bin/dev", 40002, "127.0.0.1", 3),
    ];
    let mut unit = listener("/usr/sbin/nginx", 80, "0.0.0.0", 4);
    unit.container = Some(Container {
        runtime: Runtime::Service,
        id: "nginx.service".into(),
        name: None,
    });
    ls.push(unit);
    let file = learn(
        &ls,
        (32768, 60999),
        &mut |_| "root".into(),
        vec!["t".into()],
    );
    let text = serde_json::to_string(&file).unwrap();
    let p = Policy::compile(file).unwrap();
    for l in &ls {
        assert!(p.matching(l).is_some(), "{l:?} in {text}");
    }
    // One entry per owner and port; ephemeral ports folded, optional.
    assert_eq!(p.entries().len(), 4, "{text}");
    assert!(text.contains(r#""unit":"nginx.service""#), "{text}");
    assert!(
        text.contains(r#""port":"32768-60999","scope":"loopback","optional":true"#),
        "{text}"
    );
    let mut other = listener("/opt/app1/srv", 8080, "127.0.0.1", 2);
    assert!(p.matching(&other).is_none(), "the glob was escaped");
    other.port = 22;
    assert_eq!(check(&p, &ls, ts()).len(), 0);
    assert_eq!(glob_literal("a*b"), "a\\*b");
}

#[test]
fn names_from_a_users_own_tree_vouch_only_for_entries_about_that_user() {
    let p = policy(
        r#"{"version":1,"expected":[
          {"unit":"nginx.service"},
          {"container":"db-*","port":5432},
          {"unit":"dev.service","user":"1000"}
        ]}"#,
    );
    // `systemd-run --user --unit nginx.service`, and a cgroup of a user's
    // own named like a container.
    let mut spoof = listener("/home/u/nginx", 80, "0.0.0.0", 7);
    spoof.uid = 1000;
    spoof.cgroup = "/user.slice/user-1000.slice/user@1000.service/app.slice/nginx.service".into();
    spoof.container = Some(Container {
        runtime: Runtime::Service,
        id: "nginx.service".into(),
        name: None,
    });
    assert_eq!(p.matching(&spoof), None);
    spoof.port = 5432;
    spoof.container = Some(Container {
        runtime: Runtime::Lxc,
        id: "db-1".into(),
        name: Some("db-1".into()),
    });
    assert_eq!(p.matching(&spoof), None);
    // An entry that names the user may use the user's own unit names.
    spoof.container = Some(Container {
        runtime: Runtime::Service,
        id: "dev.service".into(),
        name: None,
    });
    assert_eq!(p.matching(&spoof), Some(2));
}

#[test]
fn a_close_by_another_pid_never_ends_another_users_listener() {
    let mut d = Drifts::new(policy(
        r#"{"version":1,"expected":[{"port":5353,"user":"108"}]}"#,
    ));
    let mut avahi = listener("/usr/sbin/avahi-daemon", 5353, "0.0.0.0", 10);
    avahi.uid = 108;
    d.opened(&avahi, ts());
    d.ready(ts());
    let mut intruder = listener("/tmp/x", 5353, "0.0.0.0", 11);
    intruder.uid = 1000;
    assert_eq!(d.opened(&intruder, ts())[0].kind, DriftKind::Unexpected);
    // Its socket, closed by a child it passed it to.
    intruder.pid = 12;
    let after = d.closed(&intruder, ts());
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].kind,
        DriftKind::Expected,
        "the intruder's own ended"
    );
    assert_eq!(d.counts(), (0, 0), "avahi's entry still matched");
}
