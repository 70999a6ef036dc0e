//! UDP sockets bound before the release program watched their cgroup
//! (pure). The kernel recorded no owner for them; the engine had the
//! program attached and recorded the owner itself, but a socket released
//! before that ran no program: it is looked for again, twice, and one
//! gone is reported closed. One that cannot be looked for (its namespace
//! unreadable) is doubted: the next resync, brought forward, settles it.

use std::collections::{HashMap, HashSet};

use tokio::time::{Duration, Instant};

use crate::{
    event::{KernelEvent, ListenerKey, Scan},
    sys::UdpTables,
};

/// When an unseen socket is looked for again, after its bind was read:
/// soon (a release that began before the attach is over), then once more
/// later (one preempted in between). Then it is left to the program.
pub(super) const LOOKS: [Duration; 2] = [Duration::from_millis(10), Duration::from_secs(1)];

/// Sockets looked for at once, at most, and sockets doubted: past them a
/// socket is left to the interval resync (another user can bind many).
pub(super) const CAPACITY: usize = 4096;

/// Namespaces whose tables one check reads, at most: the rest wait for
/// the next, so that a burst of binds from many namespaces does not hold
/// up other events.
pub(super) const NAMESPACES_PER_CHECK: usize = 16;

/// Between two checks, at least.
pub(super) const CHECK_SPACING: Duration = Duration::from_millis(1);

/// A UDP socket bound before the release program covered its cgroup.
#[derive(Debug)]
pub(super) struct Unseen {
    /// Its open, as the kernel reported it.
    pub open: KernelEvent,
    /// Looks done.
    looks: usize,
    due: Instant,
}

/// What one look found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// Missing from two reads of its namespace's table (one dump is no
    /// snapshot: a live socket can be skipped when others close).
    Gone,
    There,
    /// Its namespace's table could not be read with cookies.
    Unknown,
}

/// Whether `read` missed `u`: read its namespace and did not see it.
fn misses(read: &UdpTables, u: &Unseen) -> bool {
    read.namespaces.contains(&u.open.netns) && !read.alive.contains(&u.open.sock)
}

#[derive(Debug, Default)]
pub(super) struct UnseenBinds {
    looking: Vec<Unseen>,
    /// Sockets (by cookie) whose owner is recorded but whose presence is
    /// unknown: a resync keeps the owners of those it finds.
    doubtful: HashMap<u64, Doubt>,
}

/// What a resync told of the doubted sockets.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Settled {
    /// Cookies of those gone.
    pub gone: Vec<u64>,
    /// Those in namespaces it did not reach, left as they are.
    pub unreached: usize,
}

#[derive(Debug)]
struct Doubt {
    key: ListenerKey,
    since: Instant,
}

impl UnseenBinds {
    /// Looks for `open`'s socket later; false when too many are looked
    /// for already.
    pub(super) fn add(&mut self, open: KernelEvent, now: Instant) -> bool {
        if self.looking.len() >= CAPACITY {
            return false;
        }
        self.looking.push(Unseen {
            open,
            looks: 0,
            due: now + LOOKS[0],
        });
        true
    }

    /// When the next look is due.
    pub(super) fn next(&self) -> Option<Instant> {
        self.looking.iter().map(|u| u.due).min()
    }

    /// Takes out the sockets due for a look, of at most
    /// [`NAMESPACES_PER_CHECK`] namespaces; the others wait. Those due but
    /// left wait [`CHECK_SPACING`], so that events are read in between.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Unseen> {
        let mut namespaces = HashSet::new();
        let (due, mut later): (Vec<Unseen>, Vec<Unseen>) = std::mem::take(&mut self.looking)
            .into_iter()
            .partition(|u| {
                u.due <= now
                    && (namespaces.contains(&u.open.netns)
                        || namespaces.len() < NAMESPACES_PER_CHECK
                            && namespaces.insert(u.open.netns))
            });
        for u in &mut later {
            u.due = u.due.max(now + CHECK_SPACING);
        }
        self.looking = later;
        due
    }

    /// The owners (pid, namespace) to read the tables of for `due`.
    pub(super) fn owners(due: &[Unseen]) -> Vec<(u32, u64)> {
        due.iter().map(|u| (u.open.tgid, u.open.netns)).collect()
    }

    /// The owners of the sockets `first` missed: a second read confirms.
    pub(super) fn missed(due: &[Unseen], first: &UdpTables) -> Vec<(u32, u64)> {
        due.iter()
            .filter(|u| misses(first, u))
            .map(|u| (u.open.tgid, u.open.netns))
            .collect()
    }

    /// What the reads found of `u`.
    pub(super) fn judge(u: &Unseen, first: &UdpTables, second: &UdpTables) -> Found {
        if misses(first, u) && misses(second, u) {
            Found::Gone
        } else if first.alive.contains(&u.open.sock) || second.alive.contains(&u.open.sock) {
            Found::There
        } else {
            Found::Unknown
        }
    }

    /// Looks for `u` once more later if a look is left; else gives it
    /// back.
    pub(super) fn again(&mut self, mut u: Unseen, now: Instant) -> Option<Unseen> {
        u.looks += 1;
        match LOOKS.get(u.looks) {
            Some(after) => {
                u.due = now + *after;
                self.looking.push(u);
                None
            }
            None => Some(u),
        }
    }

    /// Leaves `open`'s socket to the next resync that starts after `now`;
    /// false when too many are.
    pub(super) fn doubt(&mut self, open: &KernelEvent, now: Instant) -> bool {
        if self.doubtful.len() >= CAPACITY {
            return false;
        }
        self.doubtful.insert(
            open.sock,
            Doubt {
                key: open.key(),
                since: now,
            },
        );
        true
    }

    /// A resync whose scan started at `started` found what `scan` holds:
    /// the doubted sockets from before it (or the same instant) are
    /// settled. One is there when its namespace was read with cookies and
    /// its cookie is found, or read without and its address is; those
    /// gone are given back, their owners to be taken. One whose namespace
    /// the scan did not reach (no process there or holding a socket of
    /// it) cannot be told: it keeps its owner, as the table keeps its
    /// port, and is counted.
    pub(super) fn settle(&mut self, scan: &Scan, started: Instant) -> Settled {
        let cookies: HashSet<u64> = scan.listeners.iter().filter_map(|l| l.cookie).collect();
        let keys: HashSet<ListenerKey> = scan.listeners.iter().map(|l| l.key()).collect();
        let mut settled = Settled::default();
        self.doubtful.retain(|cookie, d| {
            // Equal only under a paused clock: a doubt is made between
            // events, never while a scan runs.
            if d.since > started {
                return true;
            }
            let there = match scan.namespaces.get(&d.key.netns) {
                Some(true) => cookies.contains(cookie),
                Some(false) => keys.contains(&d.key),
                None => {
                    settled.unreached += 1;
                    true
                }
            };
            if !there {
                settled.gone.push(*cookie);
            }
            false
        });
        settled.gone.sort_unstable();
        settled
    }

    pub(super) fn has_doubts(&self) -> bool {
        !self.doubtful.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::kernel_event;
    use portwatch_common::SockEventKind;

    fn open(cookie: u64) -> KernelEvent {
        KernelEvent {
            proto: crate::event::Proto::Udp,
            ..kernel_event(SockEventKind::Opened, 1, cookie, "0.0.0.0", 5353, 7)
        }
    }

    fn read(alive: &[u64], namespaces: &[u64]) -> UdpTables {
        UdpTables {
            alive: alive.iter().copied().collect(),
            namespaces: namespaces.iter().copied().collect(),
        }
    }

    #[test]
    fn each_socket_keeps_its_own_due_times() {
        let t = Instant::now();
        let mut b = UnseenBinds::default();
        assert!(b.add(open(1), t));
        assert!(b.add(open(2), t + Duration::from_millis(5)));
        assert_eq!(b.next(), Some(t + LOOKS[0]));
        let due = b.take_due(t + LOOKS[0]);
        assert_eq!(due.len(), 1);
        for u in due {
            assert!(b.again(u, t + LOOKS[0]).is_none());
        }
        // The second's first look is not pushed back by the first's.
        assert_eq!(b.next(), Some(t + Duration::from_millis(5) + LOOKS[0]));
        let due = b.take_due(t + Duration::from_millis(15));
        assert_eq!(due[0].open.sock, 2);
        for u in due {
            assert!(b.again(u, t + Duration::from_millis(15)).is_none());
        }
        // The first's last look, at 1 s, then none.
        let due = b.take_due(t + LOOKS[0] + LOOKS[1]);
        assert_eq!(due.len(), 1);
        let last = due.into_iter().next().map(|u| b.again(u, t));
        assert!(matches!(last, Some(Some(_))));
    }

    #[test]
    fn a_socket_is_gone_only_when_two_reads_miss_it() {
        let ns = open(9).netns;
        let u = Unseen {
            open: open(9),
            looks: 0,
            due: Instant::now(),
        };
        let missed = read(&[], &[ns]);
        let seen = read(&[9], &[ns]);
        assert_eq!(UnseenBinds::judge(&u, &missed, &missed), Found::Gone);
        assert_eq!(UnseenBinds::judge(&u, &missed, &seen), Found::There);
        assert_eq!(
            UnseenBinds::judge(&u, &seen, &UdpTables::default()),
            Found::There
        );
        // A namespace not read (or read without cookies) says nothing.
        assert_eq!(
            UnseenBinds::judge(&u, &read(&[], &[]), &read(&[], &[])),
            Found::Unknown
        );
        assert_eq!(
            UnseenBinds::judge(&u, &missed, &UdpTables::default()),
            Found::Unknown
        );
        assert_eq!(
            UnseenBinds::missed(std::slice::from_ref(&u), &missed),
            [(7, ns)]
        );
    }

    #[test]
    fn the_looks_and_the_doubts_are_bounded() {
        let t = Instant::now();
        let mut b = UnseenBinds::default();
        for c in 0..CAPACITY as u64 {
            assert!(b.add(open(c), t));
            assert!(b.doubt(&open(c), t));
        }
        assert!(!b.add(open(u64::MAX), t));
        assert!(!b.doubt(&open(u64::MAX), t));
    }

    #[test]
    fn one_check_reads_a_bounded_number_of_namespaces() {
        let t = Instant::now();
        let mut b = UnseenBinds::default();
        for i in 0..NAMESPACES_PER_CHECK as u64 + 2 {
            let mut u = open(i);
            u.netns = 100 + i;
            assert!(b.add(u, t));
            // Two sockets in the first namespace.
            if i == 0 {
                let mut u = open(1000);
                u.netns = 100;
                assert!(b.add(u, t));
            }
        }
        let due = b.take_due(t + LOOKS[0]);
        assert_eq!(due.len(), NAMESPACES_PER_CHECK + 1);
        // The rest after a pause, for the events in between.
        assert_eq!(b.next(), Some(t + LOOKS[0] + CHECK_SPACING));
        assert!(b.take_due(t + LOOKS[0]).is_empty());
        assert_eq!(b.take_due(t + LOOKS[0] + CHECK_SPACING).len(), 2);
        assert_eq!(b.next(), None);
    }

    fn scan(found: &[(u64, u16)], namespaces: &[(u64, bool)]) -> Scan {
        Scan {
            listeners: found
                .iter()
                .map(|(cookie, port)| crate::event::Listener {
                    cookie: Some(*cookie),
                    netns: open(0).netns,
                    ..crate::event::Listener::new(
                        crate::event::Proto::Udp,
                        [0, 0, 0, 0].into(),
                        *port,
                    )
                })
                .collect(),
            namespaces: namespaces.iter().copied().collect(),
        }
    }

    #[test]
    fn a_resync_takes_the_doubted_sockets_it_did_not_find() {
        let t = Instant::now();
        let ns = open(0).netns;
        let mut b = UnseenBinds::default();
        assert!(b.doubt(&open(3), t));
        assert!(b.doubt(&open(4), t));
        assert!(b.has_doubts());
        assert_eq!(
            b.settle(&scan(&[(4, 5353)], &[(ns, true)]), t + LOOKS[1])
                .gone,
            [3]
        );
        assert!(!b.has_doubts());
    }

    #[test]
    fn a_doubt_is_settled_only_by_a_scan_that_started_after_it() {
        let t = Instant::now();
        let mut b = UnseenBinds::default();
        assert!(b.doubt(&open(3), t + LOOKS[0]));
        assert_eq!(b.settle(&scan(&[], &[]), t), Settled::default());
        assert!(b.has_doubts());
    }

    #[test]
    fn without_cookies_a_doubted_socket_is_looked_for_by_its_address() {
        let t = Instant::now();
        let ns = open(0).netns;
        let mut b = UnseenBinds::default();
        assert!(b.doubt(&open(3), t));
        // The scan's row has no cookie to match, but the address.
        let mut found = scan(&[(99, 5353)], &[(ns, false)]);
        found.listeners[0].cookie = None;
        assert_eq!(b.settle(&found, t + LOOKS[0]), Settled::default());
        assert!(b.doubt(&open(3), t));
        assert_eq!(b.settle(&scan(&[], &[(ns, false)]), t + LOOKS[0]).gone, [3]);
        // A namespace no scan reached: its socket may live on (in flight,
        // say), and its close will be seen; it keeps its owner.
        assert!(b.doubt(&open(3), t));
        assert_eq!(
            b.settle(&scan(&[], &[]), t + LOOKS[0]),
            Settled {
                gone: Vec::new(),
                unreached: 1
            }
        );
        assert!(!b.has_doubts());
    }
}
