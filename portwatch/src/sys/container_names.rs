//! Names that container runtimes keep readable on disk, for the
//! containers [`Container::classify`] finds in cgroup paths: Docker's
//! `config.v2.json`, and Kubernetes pods from the kubelet's log
//! directories. No runtime socket is asked.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    container::{Container, Runtime},
    safe_text::safe_str,
};

/// A lookup that found nothing is tried again after this long: a
/// container may have been created a moment before its files.
const RETRY: Duration = Duration::from_secs(1);

pub(crate) struct ContainerNames {
    /// `/` on a host; another directory in tests.
    root: PathBuf,
    found: HashMap<(Runtime, String), Option<String>>,
    tried: HashMap<(Runtime, String), Instant>,
    /// Pod uid -> `namespace/name`, from /var/log/pods.
    pods: HashMap<String, String>,
    pods_read: Option<Instant>,
}

impl ContainerNames {
    pub(crate) fn new() -> Self {
        Self::with_root("/")
    }

    pub(crate) fn with_root(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            found: HashMap::new(),
            tried: HashMap::new(),
            pods: HashMap::new(),
            pods_read: None,
        }
    }

    /// The container of cgroup path `cgroup`, named where its runtime
    /// keeps the name on disk.
    pub(crate) fn container(&mut self, cgroup: &str) -> Option<Container> {
        let mut c = Container::classify(cgroup)?;
        let key = (c.runtime, c.id.clone());
        if let Some(name) = self.found.get(&key) {
            c.name.clone_from(name);
            return Some(c);
        }
        if self.tried.get(&key).is_some_and(|t| t.elapsed() < RETRY) {
            return Some(c);
        }
        let name = match c.runtime {
            Runtime::Docker => self.docker_name(&c.id),
            Runtime::Containerd | Runtime::Crio => {
                Container::pod_uid(cgroup).and_then(|uid| self.pod_name(&uid))
            }
            _ => None,
        };
        if name.is_some() {
            self.found.insert(key, name.clone());
        } else {
            self.tried.insert(key, Instant::now());
        }
        c.name = name;
        Some(c)
    }

    /// `Name` from /var/lib/docker/containers/ID/config.v2.json, without
    /// its leading slash.
    fn docker_name(&self, id: &str) -> Option<String> {
        let path = self
            .root
            .join("var/lib/docker/containers")
            .join(id)
            .join("config.v2.json");
        /// The one field of Docker's container config read here.
        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(rename = "Name")]
            name: String,
        }
        let config: Config = serde_json::from_slice(&read_small(&path)?).ok()?;
        let name = config.name.trim_start_matches('/');
        (!name.is_empty()).then(|| safe_str(name))
    }

    /// The pod whose uid is `uid`, as `namespace/name`: the kubelet keeps
    /// each pod's logs in /var/log/pods/NAMESPACE_NAME_UID.
    fn pod_name(&mut self, uid: &str) -> Option<String> {
        if !self.pods.contains_key(uid) && self.pods_read.is_none_or(|t| t.elapsed() >= RETRY) {
            self.pods_read = Some(Instant::now());
            if let Ok(dir) = std::fs::read_dir(self.root.join("var/log/pods")) {
                for entry in dir.flatten() {
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    let mut parts = name.splitn(3, '_');
                    if let (Some(ns), Some(pod), Some(uid)) =
                        (parts.next(), parts.next(), parts.next())
                    {
                        self.pods
                            .insert(uid.to_string(), safe_str(&format!("{ns}/{pod}")));
                    }
                }
            }
        }
        self.pods.get(uid).cloned()
    }
}

/// A small file's bytes; None for a missing file or one too large to be
/// a runtime's config.
fn read_small(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(4 << 20).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5061728394a5b6c7d8e";

    fn root(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("portwatch-names-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn docker_names_come_from_the_container_config() {
        let root = root("docker");
        let dir = root.join("var/lib/docker/containers").join(ID);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.v2.json"),
            r#"{"ID":"x","Name":"/web\u001b"}"#,
        )
        .unwrap();
        let mut names = ContainerNames::with_root(&root);
        let c = names
            .container(&format!("/system.slice/docker-{ID}.scope"))
            .unwrap();
        assert_eq!(c.label(), "docker:web\\x1b");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn pods_come_from_the_kubelet_log_directories() {
        let root = root("pods");
        std::fs::create_dir_all(
            root.join("var/log/pods/shop_cart-7d9f_0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"),
        )
        .unwrap();
        let mut names = ContainerNames::with_root(&root);
        let c = names
            .container(&format!(
                "/kubepods.slice/kubepods-pod0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b.slice/cri-containerd-{ID}.scope"
            ))
            .unwrap();
        assert_eq!(c.label(), "containerd:shop/cart-7d9f");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn without_files_the_id_is_shown() {
        let mut names = ContainerNames::with_root(root("none"));
        assert_eq!(
            names.container(&format!("/docker/{ID}")).map(|c| c.label()),
            Some("docker:3f2a9c1b7d4e".into())
        );
        assert_eq!(names.container("/"), None);
    }
}
