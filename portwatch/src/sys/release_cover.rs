//! Where the UDP release program runs (pure). A cgroup sock program runs
//! for every socket released in the cgroups it is attached under, TCP
//! connections included, so it is attached only to the cgroups of the
//! UDP sockets portwatch reports: a socket released anywhere else runs no
//! program. Another user with delegated cgroups could ask for thousands,
//! so past a bound the program goes to the root instead, which covers
//! every cgroup, and the others are let go.

use std::collections::{HashMap, HashSet};

/// The cgroup2 root's id (its kernfs node's): attached there, the
/// program covers every cgroup.
const ROOT_CGROUP: u64 = 1;

/// What to do so that sockets of one cgroup are covered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cover {
    /// Covered already (there, or at the root).
    Nothing,
    /// Attach the program to this cgroup.
    Attach(u64),
    /// Attach it at the root, then detach it from these cgroups.
    Everywhere(Vec<u64>),
}

/// The cgroups the release program is attached to.
#[derive(Debug, Default)]
pub(crate) struct ReleaseCover {
    attached: HashSet<u64>,
    everywhere: bool,
}

impl ReleaseCover {
    /// What covers sockets of `cgroup` (0: unknown, which only the root
    /// covers), with at most `bound` cgroups attached one by one. Nested
    /// cgroups are attached each (a cgroup's program also runs in its
    /// descendants, so a socket there runs it twice; the second finds no
    /// owner to report).
    pub(crate) fn plan(&self, cgroup: u64, bound: usize) -> Cover {
        if self.everywhere || self.attached.contains(&cgroup) {
            Cover::Nothing
        } else if cgroup == 0 || cgroup == ROOT_CGROUP || self.attached.len() >= bound {
            self.everywhere()
        } else {
            Cover::Attach(cgroup)
        }
    }

    /// The root instead, and the cgroups attached one by one let go.
    pub(crate) fn everywhere(&self) -> Cover {
        let mut all: Vec<u64> = self.attached.iter().copied().collect();
        all.sort_unstable();
        Cover::Everywhere(all)
    }

    /// The plan was carried out.
    pub(crate) fn done(&mut self, cover: &Cover) {
        match cover {
            Cover::Nothing => {}
            Cover::Attach(cgroup) => {
                self.attached.insert(*cgroup);
            }
            Cover::Everywhere(_) => {
                self.everywhere = true;
                self.attached.clear();
            }
        }
    }

    /// Forgets cgroups whose links are gone (see [`freed`]): their places
    /// under the bound are free again.
    pub(crate) fn forget(&mut self, cgroups: &[u64]) {
        for id in cgroups {
            self.attached.remove(id);
        }
    }

    /// Whether `bound` cgroups are attached one by one (and not the root).
    pub(crate) fn full(&self, bound: usize) -> bool {
        !self.everywhere && self.attached.len() >= bound
    }
}

/// Of `ours` (cgroup -> the kernel id of its link), the cgroups whose
/// link the kernel detached, as `seen` tells (link id -> cgroup id from
/// its fdinfo; 0 once detached): the cgroup was freed, and no socket can
/// be left in it. A link not seen is not judged.
pub(crate) fn freed(ours: &HashMap<u64, u32>, seen: &HashMap<u32, u64>) -> Vec<u64> {
    let mut freed: Vec<u64> = ours
        .iter()
        .filter(|(_, link)| seen.get(link) == Some(&0))
        .map(|(cgroup, _)| *cgroup)
        .collect();
    freed.sort_unstable();
    freed
}

/// A link of the release program, from its `/proc/PID/fdinfo` text: its
/// kernel id and its cgroup (0 once the kernel detached it, its cgroup
/// freed); None for any other descriptor.
pub(crate) fn release_link_cgroup(fdinfo: &str) -> Option<(u32, u64)> {
    let field = |name: &str| {
        fdinfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    // 34: BPF_CGROUP_INET_SOCK_RELEASE.
    if field("link_type:")? != "cgroup" || field("attach_type:")? != "34" {
        return None;
    }
    Some((
        field("link_id:")?.parse().ok()?,
        field("cgroup_id:")?.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cover that attached `ids` in turn, under `bound`.
    fn covering(ids: &[u64], bound: usize) -> ReleaseCover {
        let mut c = ReleaseCover::default();
        for id in ids {
            let plan = c.plan(*id, bound);
            c.done(&plan);
        }
        c
    }

    #[test]
    fn a_cgroup_is_attached_once() {
        let mut c = ReleaseCover::default();
        let plan = c.plan(7, 4);
        assert_eq!(plan, Cover::Attach(7));
        c.done(&plan);
        assert_eq!(c.plan(7, 4), Cover::Nothing);
        assert_eq!(c.plan(8, 4), Cover::Attach(8));
    }

    #[test]
    fn past_the_bound_the_root_covers_all_and_the_others_go() {
        let mut c = covering(&[4, 2, 3], 3);
        let plan = c.plan(5, 3);
        assert_eq!(plan, Cover::Everywhere(vec![2, 3, 4]));
        c.done(&plan);
        assert_eq!(c.plan(5, 3), Cover::Nothing);
        assert_eq!(c.plan(99, 3), Cover::Nothing);
    }

    #[test]
    fn freed_cgroups_give_their_places_back() {
        let mut c = covering(&[4, 2, 3], 3);
        assert!(c.full(3));
        let ours = [(4, 40), (2, 20), (3, 30)].into();
        // Link 30 detached, 40 live, 20 not seen (not judged).
        let freed = freed(&ours, &[(30, 0), (40, 4)].into());
        assert_eq!(freed, [3]);
        c.forget(&freed);
        assert!(!c.full(3));
        assert_eq!(c.plan(5, 3), Cover::Attach(5));
        assert_eq!(c.plan(2, 3), Cover::Nothing);
    }

    #[test]
    fn a_release_links_cgroup_is_read_from_its_fdinfo() {
        let link = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nlink_type:\tcgroup\n\
                    link_id:\t12\nprog_tag:\t0123456789abcdef\nprog_id:\t40\n\
                    cgroup_id:\t6712\nattach_type:\t34\n";
        assert_eq!(release_link_cgroup(link), Some((12, 6712)));
        assert_eq!(
            release_link_cgroup(&link.replace("6712", "0")),
            Some((12, 0)),
            "detached by the kernel"
        );
        assert_eq!(release_link_cgroup(&link.replace("\t34", "\t9")), None);
        assert_eq!(release_link_cgroup("pos:\t0\nflags:\t02\n"), None);
    }

    #[test]
    fn an_unknown_cgroup_or_the_root_is_covered_from_the_root() {
        let c = ReleaseCover::default();
        assert_eq!(c.plan(0, 64), Cover::Everywhere(Vec::new()));
        assert_eq!(c.plan(ROOT_CGROUP, 64), Cover::Everywhere(Vec::new()));
    }
}
