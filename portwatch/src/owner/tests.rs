use super::*;

fn a(pid: u32, comm: &str, cgroup: &str, root: bool) -> Forebear {
    Forebear {
        ancestor: Ancestor {
            pid,
            comm: comm.into(),
        },
        cgroup: cgroup.into(),
        root,
    }
}

/// A chain whose processes run as root.
fn facts(chain: &[(u32, &str, &str)]) -> OwnerFacts {
    OwnerFacts {
        ancestry: chain.iter().map(|(p, c, g)| a(*p, c, g, true)).collect(),
        ..OwnerFacts::default()
    }
}

/// The same chain run by a user: no process of it is root's.
fn users(chain: &[(u32, &str, &str)]) -> OwnerFacts {
    OwnerFacts {
        ancestry: chain.iter().map(|(p, c, g)| a(*p, c, g, false)).collect(),
        ..OwnerFacts::default()
    }
}

const NGINX: &str = "/system.slice/nginx.service";

#[test]
fn a_system_service_is_its_unit() {
    let f = facts(&[(10, "nginx", NGINX), (1, "systemd", "/init.scope")]);
    let o = f.origin(None);
    assert_eq!(
        (o.kind, o.name.as_str(), o.user.as_deref()),
        (OriginKind::Systemd, "nginx.service", None)
    );
    assert_eq!(o.key(), "systemd:nginx.service");
}

#[test]
fn a_user_service_names_its_user() {
    let cg = "/user.slice/user-1000.slice/user@1000.service/app.slice/dev.service";
    let f = facts(&[
        (10, "node", cg),
        (
            9,
            "systemd",
            "/user.slice/user-1000.slice/user@1000.service/init.scope",
        ),
    ]);
    let o = f.origin(None);
    assert_eq!(o.kind, OriginKind::Systemd);
    assert_eq!(o.name, "dev.service");
    assert_eq!(o.user.as_deref(), Some("1000"));
}

#[test]
fn scopes_are_no_service() {
    assert_eq!(
        systemd_unit("/user.slice/user-1000.slice/session-3.scope"),
        None
    );
    assert_eq!(systemd_unit(""), None);
}

#[test]
fn cron_and_supervisors_in_the_same_cgroup_come_before_the_unit() {
    let cron = "/system.slice/cron.service";
    let f = facts(&[
        (30, "python3", cron),
        (29, "sh", cron),
        (28, "cron", cron),
        (1, "systemd", "/init.scope"),
    ]);
    assert_eq!(f.origin(None).key(), "cron:cron");
    let sup = "/system.slice/supervisor.service";
    let f = facts(&[
        (30, "gunicorn", sup),
        (20, "supervisord", sup),
        (1, "systemd", "/"),
    ]);
    assert_eq!(f.origin(None).key(), "supervisor:supervisord");
    let f = facts(&[
        (30, "node", sup),
        (20, "PM2 v5.3.0: God", sup),
        (1, "systemd", "/"),
    ]);
    assert_eq!(f.origin(None).key(), "supervisor:pm2");
}

#[test]
fn a_unit_wins_over_a_story_beyond_its_cgroup() {
    // Started in a unit of its own by a shell of an ssh login.
    let f = facts(&[
        (30, "server", "/system.slice/x.service"),
        (29, "bash", "/user.slice/user-0.slice/session-1.scope"),
        (28, "sshd", "/user.slice/user-0.slice/session-1.scope"),
    ]);
    assert_eq!(f.origin(None).key(), "systemd:x.service");
}

#[test]
fn ssh_names_the_login_user_and_session() {
    let s = "/user.slice/user-1000.slice/session-4.scope";
    let mut f = facts(&[
        (30, "server", s),
        (29, "bash", s),
        (28, "sshd-session", s),
        (27, "sshd", "/system.slice/ssh.service"),
    ]);
    f.login_user = Some("alice".into());
    f.session = Some(4);
    let o = f.origin(None);
    assert_eq!(o.key(), "ssh:alice");
    assert_eq!(o.session.as_deref(), Some("4"));
}

#[test]
fn a_tmux_pane_beyond_its_scope_is_a_terminal() {
    let f = facts(&[
        (30, "server", "/user.slice/tmux-spawn-1.scope"),
        (29, "bash", "/user.slice/tmux-spawn-1.scope"),
        (20, "tmux: server", "/user.slice/session-2.scope"),
    ]);
    assert_eq!(f.origin(None).key(), "terminal:tmux");
}

#[test]
fn a_reparented_server_is_told_by_its_environment_then_its_tty() {
    let mut f = facts(&[(30, "server", "/t"), (1, "systemd", "/init.scope")]);
    assert_eq!(f.origin(None).key(), "init:systemd");
    f.tty = Some("pts/3".into());
    assert_eq!(f.origin(None).key(), "terminal:pts/3");
    f.ssh_env = true;
    f.login_user = Some("bob".into());
    assert_eq!(f.origin(None).key(), "ssh:bob");
    f.tmux_pane = Some("%3".into());
    let o = f.origin(None);
    assert_eq!(o.key(), "terminal:tmux");
    assert_eq!(o.session.as_deref(), Some("%3"));
}

#[test]
fn a_container_says_it_first() {
    let c = Container {
        runtime: Runtime::Docker,
        id: "a".repeat(64),
        name: Some("web".into()),
    };
    let f = facts(&[(30, "sshd", "/x"), (29, "sshd", "/x")]);
    assert_eq!(f.origin(Some(&c)).key(), "container:docker:web");
    let unnamed = Container { name: None, ..c };
    assert_eq!(
        f.origin(Some(&unnamed)).key(),
        "container:docker:aaaaaaaaaaaa"
    );
    // A service "container" is told by the unit instead.
    let unit = Container {
        runtime: Runtime::Service,
        id: "nginx.service".into(),
        name: None,
    };
    let f = facts(&[(10, "nginx", NGINX), (1, "systemd", "/")]);
    assert_eq!(f.origin(Some(&unit)).key(), "systemd:nginx.service");
}

#[test]
fn head_files_are_read_strictly() {
    assert_eq!(
        branch_of_head(b"ref: refs/heads/feature/x\n"),
        Some(Some("feature/x".into()))
    );
    assert_eq!(branch_of_head(&[b'a'; 40]), Some(None));
    assert_eq!(branch_of_head(b"root:x:0:0:root:/root:/bin/bash\n"), None);
    assert_eq!(branch_of_head(&[0xff, 0xfe]), None);
    // A branch name with control bytes is made safe.
    let Some(Some(b)) = branch_of_head(b"ref: refs/heads/a\x1b[31mb") else {
        panic!("not read")
    };
    assert!(!b.contains('\x1b'));
}

#[test]
fn gitdir_files_are_read() {
    assert_eq!(
        gitdir_of_file(b"gitdir: ../.git/worktrees/x\n"),
        Some("../.git/worktrees/x")
    );
    assert_eq!(gitdir_of_file(b"gitdir: \n"), None);
    assert_eq!(gitdir_of_file(b"nonsense"), None);
}

#[test]
fn root_vouches_for_system_units_containers_cron_and_sshd_and_nothing_else() {
    // Root's own: trusted.
    let f = facts(&[(10, "nginx", NGINX), (1, "systemd", "/init.scope")]);
    assert!(f.origin(None).trusted);
    let cron = "/system.slice/cron.service";
    assert!(
        facts(&[(30, "sh", cron), (28, "CRON", cron)])
            .origin(None)
            .trusted
    );
    // An ssh login: the user's own sshd under root's.
    let s = "/user.slice/user-1000.slice/session-4.scope";
    let mut login = users(&[(30, "server", s), (29, "bash", s), (28, "sshd-session", s)]);
    login
        .ancestry
        .push(a(27, "sshd", "/system.slice/ssh.service", true));
    let o = login.origin(None);
    assert_eq!((o.kind, o.trusted), (OriginKind::Ssh, true));

    // A user's forgeries: a process named cron, sshd or supervisord, an
    // environment that says tmux or ssh, a unit of its own manager.
    for comm in ["cron", "sshd", "supervisord"] {
        let f = users(&[(30, "server", "/t"), (29, comm, "/t"), (1, "systemd", "/")]);
        let o = f.origin(None);
        assert!(!o.trusted, "{comm}: {o:?}");
    }
    let mut env = users(&[(30, "server", "/t"), (1, "systemd", "/")]);
    env.ssh_env = true;
    assert!(!env.origin(None).trusted);
    env.tmux_pane = Some("%1".into());
    assert!(!env.origin(None).trusted);
    let unit = "/user.slice/user-1000.slice/user@1000.service/app.slice/x.service";
    assert!(!users(&[(30, "server", unit)]).origin(None).trusted);
    // A rootless container, in its user's manager; and a root one.
    let c = Container {
        runtime: Runtime::Podman,
        id: "b".repeat(64),
        name: None,
    };
    let rootless = "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-x.scope";
    assert!(!users(&[(30, "server", rootless)]).origin(Some(&c)).trusted);
    assert!(
        facts(&[(30, "server", "/machine.slice/libpod-x.scope")])
            .origin(Some(&c))
            .trusted
    );
    // A terminal is its user's word, even under root.
    assert!(
        !facts(&[(30, "server", "/t"), (29, "tmux: server", "/t")])
            .origin(None)
            .trusted
    );
}
