//! Which container or service a process runs in, from its cgroup v2 path:
//! Docker, Podman, containerd and CRI-O (Kubernetes), LXC,
//! systemd-nspawn, or a systemd service unit. Pure: the path is all it
//! reads (names that runtimes keep on disk are looked up by `sys`).

use serde::{Deserialize, Serialize};

/// What runs a container, or a service manager's unit.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Runtime {
    Docker,
    Podman,
    /// containerd, directly or as Kubernetes' CRI.
    Containerd,
    Crio,
    Lxc,
    Nspawn,
    /// A systemd service unit (`nginx.service`): no container, but what
    /// an operator knows the process by.
    Service,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Containerd => "containerd",
            Runtime::Crio => "crio",
            Runtime::Lxc => "lxc",
            Runtime::Nspawn => "nspawn",
            Runtime::Service => "service",
        }
    }
}

/// A container (or service unit) a process belongs to.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Container {
    pub runtime: Runtime,
    /// The runtime's id (64 hex digits for Docker, Podman, containerd and
    /// CRI-O), or the name for LXC, nspawn and units.
    pub id: String,
    /// A name the runtime keeps readable on disk (Docker's container name,
    /// a Kubernetes pod as `namespace/name`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Container {
    /// The container of a cgroup v2 path (as /proc/PID/cgroup shows it),
    /// or None for a process of the host outside any service unit.
    pub fn classify(cgroup: &str) -> Option<Container> {
        let parts: Vec<&str> = cgroup.split('/').filter(|p| !p.is_empty()).collect();
        // The innermost container wins; a unit only if no container holds
        // the process (a container's scope sits in a slice, not a unit).
        for (i, part) in parts.iter().enumerate().rev() {
            if let Some(c) = container_part(part, parts.get(i.wrapping_sub(1)).copied()) {
                return Some(c);
            }
        }
        for (i, part) in parts.iter().enumerate() {
            if let Some(name) = part.strip_prefix("lxc.payload.") {
                return Some(Self::named(Runtime::Lxc, name));
            }
            if *part == "lxc"
                && let Some(name) = parts.get(i + 1)
            {
                return Some(Self::named(Runtime::Lxc, name));
            }
            if let Some(name) = part
                .strip_prefix("systemd-nspawn@")
                .and_then(|n| n.strip_suffix(".service"))
                .or_else(|| {
                    part.strip_prefix("machine-")
                        .and_then(|n| n.strip_suffix(".scope"))
                })
            {
                return Some(Self::named(Runtime::Nspawn, name));
            }
        }
        // The innermost service unit (user services sit in user@UID.service).
        parts
            .iter()
            .rev()
            .find(|p| p.ends_with(".service") && !p.starts_with("user@"))
            .map(|unit| Self::named(Runtime::Service, unit))
    }

    fn named(runtime: Runtime, id: &str) -> Container {
        Container {
            runtime,
            id: id.to_string(),
            name: None,
        }
    }

    /// The first 12 digits of a hex id, as `docker ps` shows it; a name
    /// as it is.
    pub fn short_id(&self) -> &str {
        if is_hex_id(&self.id) {
            &self.id[..12]
        } else {
            &self.id
        }
    }

    /// `runtime:name`, or `runtime:short-id` without a name.
    pub fn label(&self) -> String {
        format!(
            "{}:{}",
            self.runtime.as_str(),
            self.name.as_deref().unwrap_or(self.short_id())
        )
    }

    /// The Kubernetes pod uid in a cgroup path (`pod<uid>` or the systemd
    /// driver's `kubepods-...-pod<uid_with_underscores>.slice`).
    pub fn pod_uid(cgroup: &str) -> Option<String> {
        cgroup.split('/').find_map(|part| {
            let part = part.strip_suffix(".slice").unwrap_or(part);
            let uid = part.rsplit_once("pod").map(|(_, u)| u)?;
            (uid.len() >= 32
                && uid
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == '-' || c == '_'))
            .then(|| uid.replace('_', "-"))
        })
    }
}

/// One path component that names a container with a hex id.
fn container_part(part: &str, parent: Option<&str>) -> Option<Container> {
    let scope = part.strip_suffix(".scope").unwrap_or(part);
    let prefixed = [
        ("docker-", Runtime::Docker),
        ("libpod-", Runtime::Podman),
        ("cri-containerd-", Runtime::Containerd),
        ("nerdctl-", Runtime::Containerd),
        ("crio-", Runtime::Crio),
    ];
    for (prefix, runtime) in prefixed {
        if let Some(id) = scope.strip_prefix(prefix)
            && is_hex_id(id)
        {
            return Some(Container::named(runtime, id));
        }
    }
    // cgroupfs drivers: /docker/<id>, /libpod_parent/libpod-<id> (above),
    // /kubepods/<qos>/pod<uid>/<id>, containerd's /<namespace>/<id>.
    if is_hex_id(part) {
        let runtime = match parent {
            Some("docker") => Runtime::Docker,
            Some(p) if p.starts_with("pod") => Runtime::Containerd,
            _ => return None,
        };
        return Some(Container::named(runtime, part));
    }
    None
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5061728394a5b6c7d8e";

    fn label(path: &str) -> Option<String> {
        Container::classify(path).map(|c| c.label())
    }

    #[test]
    fn each_runtime_as_it_lays_out_its_cgroups() {
        let cases = [
            // Docker, systemd and cgroupfs drivers, rootless.
            (
                format!("/system.slice/docker-{ID}.scope"),
                "docker:3f2a9c1b7d4e",
            ),
            (format!("/docker/{ID}"), "docker:3f2a9c1b7d4e"),
            (
                format!(
                    "/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{ID}.scope"
                ),
                "docker:3f2a9c1b7d4e",
            ),
            // Podman, rootful and rootless, and the cgroupfs manager.
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                "podman:3f2a9c1b7d4e",
            ),
            (
                format!(
                    "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
                ),
                "podman:3f2a9c1b7d4e",
            ),
            (format!("/libpod_parent/libpod-{ID}"), "podman:3f2a9c1b7d4e"),
            // Kubernetes with containerd and with CRI-O, both drivers.
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b.slice/cri-containerd-{ID}.scope"
                ),
                "containerd:3f2a9c1b7d4e",
            ),
            (
                format!("/kubepods/besteffort/pod0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/{ID}"),
                "containerd:3f2a9c1b7d4e",
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-pod0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b.slice/crio-{ID}.scope"
                ),
                "crio:3f2a9c1b7d4e",
            ),
            (
                format!("/system.slice/nerdctl-{ID}.scope"),
                "containerd:3f2a9c1b7d4e",
            ),
            // LXC (4 and later, and older), systemd-nspawn (both ways).
            ("/lxc.payload.web/init.scope".into(), "lxc:web"),
            ("/lxc/db".into(), "lxc:db"),
            (
                "/machine.slice/systemd-nspawn@build.service/payload".into(),
                "nspawn:build",
            ),
            (
                "/machine.slice/machine-build.scope/payload".into(),
                "nspawn:build",
            ),
            // Services, system and user ones.
            (
                "/system.slice/nginx.service".into(),
                "service:nginx.service",
            ),
            (
                "/user.slice/user-1000.slice/user@1000.service/app.slice/vite.service".into(),
                "service:vite.service",
            ),
        ];
        for (path, want) in cases {
            assert_eq!(label(&path).as_deref(), Some(want), "{path}");
        }
    }

    #[test]
    fn the_host_and_look_alikes_are_no_container() {
        for path in [
            "/",
            "",
            "/user.slice/user-1000.slice/session-3.scope",
            "/user.slice/user-1000.slice/user@1000.service/init.scope",
            "/system.slice/docker-notanid.scope",
            "/docker/abc",
            // A conmon process watches a container from outside it.
            &format!("/machine.slice/libpod-conmon-{ID}.scope"),
        ] {
            assert_eq!(label(path), None, "{path}");
        }
    }

    #[test]
    fn a_pod_is_found_by_its_uid() {
        assert_eq!(
            Container::pod_uid(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b.slice/x"
            )
            .as_deref(),
            Some("0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b")
        );
        assert_eq!(Container::pod_uid("/system.slice/nginx.service"), None);
    }

    #[test]
    fn a_known_name_is_shown_instead_of_the_id() {
        let mut c = Container::classify(&format!("/docker/{ID}")).unwrap();
        c.name = Some("web".into());
        assert_eq!(c.label(), "docker:web");
        assert_eq!(c.short_id(), "3f2a9c1b7d4e");
    }
}
