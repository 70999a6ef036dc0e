//! The procfs baseline: the sockets of every network namespace, and the
//! processes owning them.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    mem::MaybeUninit,
    net::SocketAddr,
    os::fd::OwnedFd,
};

use procfs::process::{FDTarget, Process};

use super::{
    netns::{self, Entered, Namespaces},
    sock_diag,
    socket_table::{SocketEntry, SocketQuery, States},
};
use crate::{
    error::{Error, Result},
    event::{Listener, Proto, Scan},
    safe_text::safe_text,
    socket::{SocketInfo, SocketState},
};

/// A process that holds a socket open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Holder {
    pub pid: u32,
    /// Start time in clock ticks since boot: among several holders of one
    /// socket (a server that forked workers), the oldest is the owner.
    pub start_time: u64,
    pub comm: String,
}

/// The fields of /proc/PID/stat portwatch uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Made safe from the raw bytes, exactly as a kernel event's name is.
    pub comm: String,
    pub ppid: u32,
    /// Clock ticks since boot.
    pub start_time: u64,
    /// User plus system time, in clock ticks.
    pub cpu_ticks: u64,
    pub threads: u32,
    pub rss_pages: u64,
    /// The controlling terminal's device number; 0 for none.
    pub tty_nr: u32,
}

/// Parses /proc/PID/stat. Pure. The name is the bytes between the first
/// `(` and the last `)`, as they are: a name may hold spaces, parentheses
/// and bytes that are not UTF-8 (procfs's parser decodes it lossily, which
/// would make distinct names look alike).
pub(crate) fn parse_stat(bytes: &[u8]) -> Option<ProcStat> {
    let open = bytes.iter().position(|&b| b == b'(')?;
    let close = bytes.iter().rposition(|&b| b == b')')?;
    let comm = safe_text(bytes.get(open + 1..close)?);
    let rest = std::str::from_utf8(bytes.get(close + 1..)?).ok()?;
    // Fields after the name, from field 3 (state) on.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(ProcStat {
        comm,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: num(19)?,
        cpu_ticks: num(11)?.saturating_add(num(12)?),
        threads: u32::try_from(num(17)?).unwrap_or(u32::MAX),
        rss_pages: num(21)?,
        tty_nr: num(4).and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
    })
}

/// /proc/PID/stat, parsed; None when the process is gone.
pub(crate) fn read_full_stat(pid: u32) -> Option<ProcStat> {
    read_stat(pid)
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&read_small(pid, "stat")?)
}

/// Reads a small /proc file in one `read` (a stat line, a cgroup path):
/// none of `std::fs::read`'s size query, a third of the system calls.
pub(crate) fn read_small(pid: u32, what: &str) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(format!("/proc/{pid}/{what}")).ok()?;
    let mut buf = vec![0u8; 1024];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match f.read(buf.get_mut(len..)?) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
        // Cut short: these files are a line or a few.
        if len >= 64 * 1024 {
            break;
        }
    }
    buf.truncate(len);
    Some(buf)
}

/// A process's arguments joined by spaces, each made safe; None when
/// unreadable or empty (a kernel thread, a zombie). Read up to 64 KiB.
pub(crate) fn cmdline(pid: u32) -> Option<String> {
    let bytes = read_small(pid, "cmdline")?;
    let args: Vec<String> = bytes
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(safe_text)
        .collect();
    (!args.is_empty()).then(|| args.join(" "))
}

/// The real and effective uids of `pid` (its status's `Uid:` line).
pub(crate) fn uids(pid: u32) -> Option<(u32, u32)> {
    let status = read_small(pid, "status")?;
    let ids = status
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"Uid:"))?;
    let mut it = std::str::from_utf8(ids).ok()?.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The target of link `what` of `pid` (`exe`, `cwd`), made safe.
pub(crate) fn link(pid: u32, what: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/{what}"))
        .ok()
        .map(|p| safe_text(p.as_os_str().as_encoded_bytes()))
}

/// A process's cgroup v2 path (the `0::` line), made safe, or empty.
pub(crate) fn cgroup_of(pid: u32) -> String {
    let Some(bytes) = read_small(pid, "cgroup") else {
        return String::new();
    };
    bytes
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"0::"))
        .map(safe_text)
        .unwrap_or_default()
}

/// Whether `pid` names a process, a thread of one, or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProcessKind {
    Missing,
    Process,
    /// A thread that is not its process's leader.
    ThreadOf(u32),
}

pub(crate) fn process_kind(pid: u32) -> ProcessKind {
    match Process::new(pid as i32).and_then(|p| p.status()) {
        Ok(s) if s.tgid == pid as i32 => ProcessKind::Process,
        Ok(s) => ProcessKind::ThreadOf(u32::try_from(s.tgid).unwrap_or(0)),
        Err(_) => ProcessKind::Missing,
    }
}

/// Every socket `queries` ask for, in every network namespace, with its
/// owner: the oldest process holding it for which `owner_ok` is true. A
/// socket no such process holds is kept with pid 0 only if `owner_ok(0)`.
///
/// The namespaces are those of processes, of `ip netns`, and those that
/// only a socket held by a process elsewhere leads to. The socket tables
/// are read before and after the processes' file descriptors, and only
/// sockets present both times are kept: a socket that exists across the
/// whole scan cannot hide from the descriptor walk, and one closed
/// meanwhile is not reported as an orphan. (A table read while it changes
/// may also list a socket twice.)
pub(crate) fn scan_listeners(
    queries: &[SocketQuery],
    owner_ok: &dyn Fn(u32) -> bool,
) -> Result<Scan> {
    let (owned, namespaces) = scan_owned(queries, owner_ok)?;
    let listeners = owned
        .into_iter()
        .map(|(e, owner, cgroup)| {
            let pid = owner.as_ref().map_or(0, |h| h.pid);
            entry_listener(&e, pid, owner.map(|h| h.comm).unwrap_or_default(), cgroup)
        })
        .collect();
    Ok(Scan {
        listeners,
        namespaces,
    })
}

/// Every socket `queries` ask for, in any state, with its owner, as
/// `ss -tuanp` shows them (see [`scan_listeners`]).
pub(crate) fn scan_sockets(queries: &[SocketQuery]) -> Result<Vec<SocketInfo>> {
    let (owned, _) = scan_owned(queries, &|_| true)?;
    Ok(owned
        .into_iter()
        .map(|(e, owner, cgroup)| SocketInfo {
            proto: e.proto,
            state: SocketState::from_kernel(e.proto, e.state),
            local: e.local,
            remote: (!e.remote.ip().is_unspecified() || e.remote.port() != 0).then_some(e.remote),
            pid: owner.as_ref().map_or(0, |h| h.pid),
            comm: owner.map(|h| h.comm).unwrap_or_default(),
            uid: e.uid,
            netns: e.netns,
            cookie: e.cookie,
            inode: e.inode,
            cgroup,
            container: None,
        })
        .collect())
}

/// The sockets of the tables with their owner (if `owner_ok` admits one)
/// and the owner's cgroup path, and which namespaces were read.
type Owned = (SocketEntry, Option<Holder>, String);

fn scan_owned(
    queries: &[SocketQuery],
    owner_ok: &dyn Fn(u32) -> bool,
) -> Result<(Vec<Owned>, HashMap<u64, bool>)> {
    let mut spaces = Namespaces::new(&list_processes()?);
    let mut before = read_tables(&spaces, &spaces.inodes(), queries);
    // Listed again after the first read: whoever created a socket seen in
    // that read existed by then, so the walk below meets its holder.
    let all = list_processes()?;
    spaces.add_processes(&all);
    let wanted: HashSet<u64> = rows(&before).map(|e| e.inode).collect();
    // Who holds each socket of the tables, and where every other socket
    // is held (the sockets of a namespace no process is in are among them).
    let mut stats: HashMap<u32, Option<ProcStat>> = HashMap::new();
    let mut holders: HashMap<u64, Vec<Holder>> = HashMap::new();
    let mut elsewhere: HashMap<u64, Vec<(u32, u32)>> = HashMap::new();
    for &(pid, _) in &all {
        for (fd, inode) in socket_fds(pid) {
            if wanted.contains(&inode) {
                // Processes come and go while we read: one that vanished
                // is skipped.
                holders
                    .entry(inode)
                    .or_default()
                    .extend(holder(&mut stats, pid));
            } else {
                elsewhere.entry(inode).or_default().push((pid, fd));
            }
        }
    }
    let found = namespaces_of_sockets(&mut spaces, &all, &elsewhere, queries);
    if !found.is_empty() {
        let more = read_tables(&spaces, &found, queries);
        for e in rows(&more) {
            for &(pid, _) in elsewhere.get(&e.inode).into_iter().flatten() {
                holders
                    .entry(e.inode)
                    .or_default()
                    .extend(holder(&mut stats, pid));
            }
        }
        before.extend(more);
    }

    let after = read_tables(
        &spaces,
        &before.keys().copied().collect::<Vec<_>>(),
        queries,
    );
    let still: HashSet<u64> = rows(&after).map(|e| e.inode).collect();
    let mut namespaces = HashMap::new();
    let mut seen = HashSet::new();
    let mut entries = Vec::new();
    for (ino, (cookies, table)) in before {
        // Read both times, or not read at all.
        let Some((cookies_after, _)) = after.get(&ino) else {
            continue;
        };
        namespaces.insert(ino, cookies && *cookies_after);
        entries.extend(
            table
                .into_iter()
                .filter(|e| still.contains(&e.inode) && seen.insert(e.inode)),
        );
    }
    // One cgroup read per owner, not per socket: servers own many.
    let mut cgroups: HashMap<u32, String> = HashMap::new();
    let owned = with_owners(entries, &holders, owner_ok)
        .into_iter()
        .map(|(e, owner)| {
            let cgroup = owner.as_ref().map_or_else(String::new, |h| {
                cgroups
                    .entry(h.pid)
                    .or_insert_with(|| cgroup_of(h.pid))
                    .clone()
            });
            (e, owner, cgroup)
        })
        .collect();
    Ok((owned, namespaces))
}

/// Finds the namespaces that sockets missing from the tables read so far
/// lead to, adds them to `spaces` and returns them. Most such sockets are
/// Unix sockets, or TCP and UDP sockets in states the queries did not ask
/// for: the first are told apart by their protocol name, the second by a
/// read of every state of their holder's namespace; only what is left is
/// asked for its namespace (SIOCGSKNS).
fn namespaces_of_sockets(
    spaces: &mut Namespaces,
    processes: &[(u32, Option<u64>)],
    sockets: &HashMap<u64, Vec<(u32, u32)>>,
    queries: &[SocketQuery],
) -> Vec<u64> {
    let protos: HashSet<Proto> = queries.iter().map(|q| q.proto).collect();
    let netns_of: HashMap<u32, Option<u64>> = processes.iter().copied().collect();
    let mut by_ns: HashMap<Option<u64>, Vec<(u64, u32, u32)>> = HashMap::new();
    for (&inode, held) in sockets {
        // One holder is enough to ask.
        let Some(&(pid, fd)) = held.first() else {
            continue;
        };
        if netns::socket_proto(pid, fd).is_some_and(|p| protos.contains(&p)) {
            let ns = netns_of.get(&pid).copied().flatten();
            by_ns.entry(ns).or_default().push((inode, pid, fd));
        }
    }
    let every_state: Vec<SocketQuery> = protos
        .iter()
        .map(|&proto| SocketQuery {
            proto,
            states: States::ALL,
        })
        .collect();
    let mut found = Vec::new();
    for (ns, candidates) in by_ns {
        let known: HashSet<u64> = ns
            .and_then(|ns| table_rows(spaces, ns, &every_state))
            .map(|(_, rows)| rows.iter().map(|r| r.inode).collect())
            .unwrap_or_default();
        for (inode, pid, fd) in candidates.into_iter().filter(|c| !known.contains(&c.0)) {
            if let Some((ino, fd)) = netns::of_socket(pid, fd, inode)
                && spaces.add_fd(ino, fd)
            {
                found.push(ino);
            }
        }
    }
    found
}

/// Process `pid` as a holder of sockets, its stat read once per scan.
fn holder(stats: &mut HashMap<u32, Option<ProcStat>>, pid: u32) -> Option<Holder> {
    let stat = stats
        .entry(pid)
        .or_insert_with(|| read_stat(pid))
        .as_ref()?;
    Some(Holder {
        pid,
        start_time: stat.start_time,
        comm: stat.comm.clone(),
    })
}

/// The rows of every namespace's table.
fn rows(tables: &HashMap<u64, (bool, Vec<SocketEntry>)>) -> impl Iterator<Item = &SocketEntry> {
    tables.values().flat_map(|(_, rows)| rows)
}

/// The socket descriptors of a process: (fd, socket inode). One
/// readlinkat(2) per descriptor, relative to the open fd directory, so the
/// kernel does not walk /proc/PID/fd/N from the root for each one (ss
/// does, and pays for it).
fn socket_fds(pid: u32) -> Vec<(u32, u64)> {
    let dir_path = format!("/proc/{pid}/fd");
    let (Ok(dir), Ok(entries)) = (File::open(&dir_path), std::fs::read_dir(&dir_path)) else {
        return Vec::new();
    };
    let mut buf = [MaybeUninit::<u8>::uninit(); 64];
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let fd: u32 = name.to_str()?.parse().ok()?;
            let (link, _) = rustix::fs::readlinkat_raw(&dir, name.as_os_str(), &mut buf).ok()?;
            match std::str::from_utf8(link).ok()?.parse::<FDTarget>().ok()? {
                FDTarget::Socket(inode) => Some((fd, inode)),
                _ => None,
            }
        })
        .collect()
}

/// Every process (its pid) and its network namespace. Reads the /proc
/// directory only: opening each process is left to whoever needs it.
fn list_processes() -> Result<Vec<(u32, Option<u64>)>> {
    Ok(pids()?
        .into_iter()
        .map(|pid| (pid, netns::of_process(pid)))
        .collect())
}

/// Every pid in /proc.
fn pids() -> Result<Vec<u32>> {
    let dir = std::fs::read_dir("/proc").map_err(|source| Error::Io {
        what: "cannot list the processes in /proc",
        source,
    })?;
    Ok(dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect())
}

/// The rows `queries` ask for in the tables of namespaces `inodes`, each
/// with whether they came with cookies (sock_diag). A namespace that
/// cannot be read is left out.
fn read_tables(
    spaces: &Namespaces,
    inodes: &[u64],
    queries: &[SocketQuery],
) -> HashMap<u64, (bool, Vec<SocketEntry>)> {
    inodes
        .iter()
        .filter_map(|&ino| Some((ino, table_rows(spaces, ino, queries)?)))
        .collect()
}

/// The rows of namespace `ino`: by sock_diag, or from /proc/PID/net/*
/// where sock_diag is unavailable (a kernel without it).
fn table_rows(
    spaces: &Namespaces,
    ino: u64,
    queries: &[SocketQuery],
) -> Option<(bool, Vec<SocketEntry>)> {
    let diag = spaces.with(ino, |entered| {
        let rows = match entered {
            Entered::Own => sock_diag::sockets_here(queries, ino),
            other => sock_diag::sockets_in(other.fd()?, queries, ino),
        };
        rows.ok()
    });
    if let Some(rows) = diag {
        return Some((true, rows));
    }
    let own = std::process::id();
    spaces
        .processes(ino)
        .chain((netns::of_process(own) == Some(ino)).then_some(own))
        .find_map(|pid| proc_net_rows(pid, ino, queries))
        .map(|rows| (false, rows))
}

/// The rows of /proc/PID/net/{tcp,tcp6,udp,udp6}: no cookies there.
fn proc_net_rows(pid: u32, ino: u64, queries: &[SocketQuery]) -> Option<Vec<SocketEntry>> {
    let proc = Process::new(pid as i32).ok()?;
    let mut rows = Vec::new();
    for q in queries {
        let entry = |proto, state, local, remote, uid, inode| SocketEntry {
            proto,
            state,
            local,
            remote,
            uid,
            inode,
            cookie: None,
            netns: ino,
            cgroup: 0,
        };
        // A kernel without IPv6 has no tcp6 or udp6 table: that is no error.
        match q.proto {
            Proto::Tcp => rows.extend(
                proc.tcp()
                    .ok()?
                    .into_iter()
                    .chain(proc.tcp6().unwrap_or_default())
                    .map(|e| {
                        let state = e.state.to_u8();
                        entry(
                            Proto::Tcp,
                            state,
                            e.local_address,
                            e.remote_address,
                            e.uid,
                            e.inode,
                        )
                    })
                    .filter(|e| q.states.contains(e.state)),
            ),
            Proto::Udp => rows.extend(
                proc.udp()
                    .ok()?
                    .into_iter()
                    .chain(proc.udp6().unwrap_or_default())
                    .map(|e| {
                        let state = e.state.to_u8();
                        entry(
                            Proto::Udp,
                            state,
                            e.local_address,
                            e.remote_address,
                            e.uid,
                            e.inode,
                        )
                    })
                    .filter(|e| q.states.contains(e.state)),
            ),
        }
    }
    Some(rows)
}

/// Pure: joins socket entries with the oldest holder of each for which
/// `owner_ok` is true; an entry with none is kept only if `owner_ok(0)`.
pub(crate) fn with_owners(
    entries: Vec<SocketEntry>,
    holders: &HashMap<u64, Vec<Holder>>,
    owner_ok: &dyn Fn(u32) -> bool,
) -> Vec<(SocketEntry, Option<Holder>)> {
    entries
        .into_iter()
        .filter_map(|e| {
            let candidates = holders.get(&e.inode).map(Vec::as_slice).unwrap_or_default();
            let owner = candidates
                .iter()
                .filter(|h| owner_ok(h.pid))
                .min_by_key(|h| (h.start_time, h.pid))
                .cloned();
            if owner.is_none() && !owner_ok(0) {
                return None;
            }
            Some((e, owner))
        })
        .collect()
}

/// A listening socket a process holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeldSocket {
    pub pid: u32,
    pub local: SocketAddr,
    pub cookie: Option<u64>,
}

/// The listening TCP sockets the processes `pids` hold: one table read
/// per namespace, one descriptor walk per process.
pub(crate) fn held_listeners(pids: &[u32]) -> Vec<HeldSocket> {
    held_sockets(pids, SocketQuery::TCP_LISTEN)
        .into_iter()
        .map(|(pid, r)| HeldSocket {
            pid,
            local: r.local,
            cookie: r.cookie,
        })
        .collect()
}

/// Every listening TCP socket in the namespaces of `owners` (see
/// `Host::listening_sockets`).
pub(crate) fn listening_sockets(owners: &[(u32, u64)]) -> Vec<HeldSocket> {
    owners_sockets(owners, SocketQuery::TCP_LISTEN).0
}

/// One read of the UDP tables of some namespaces (see
/// `Host::udp_sockets`).
#[derive(Debug, Default)]
pub(crate) struct UdpTables {
    /// The cookies of the sockets seen.
    pub alive: HashSet<u64>,
    /// The namespaces whose tables were read with cookies.
    pub namespaces: HashSet<u64>,
}

/// The cookies of every UDP socket in the namespaces of `owners`, and the
/// namespaces read (see `Host::udp_sockets`).
pub(crate) fn udp_sockets(owners: &[(u32, u64)]) -> UdpTables {
    let (held, namespaces) = owners_sockets(owners, SocketQuery::every_state(Proto::Udp));
    UdpTables {
        alive: held.into_iter().filter_map(|h| h.cookie).collect(),
        namespaces,
    }
}

/// The sockets `query` asks for in the namespaces of `owners` (a pid, and
/// the namespace the kernel saw its socket in; 0 when unknown), named with
/// the pid they were seen through, and the namespaces whose tables were
/// read with cookies.
fn owners_sockets(owners: &[(u32, u64)], query: SocketQuery) -> (Vec<HeldSocket>, HashSet<u64>) {
    let mut pids: Vec<u32> = owners.iter().map(|o| o.0).collect();
    pids.sort_unstable();
    pids.dedup();
    let (mut spaces, by_ns) = namespaces_of(&pids);
    let mut out = Vec::new();
    let mut read = HashSet::new();
    // Namespace `ns`'s table, its sockets named with `pid`.
    let mut read_table = |spaces: &Namespaces, ns: u64, pid: u32| {
        if let Some((cookies, rows)) = table_rows(spaces, ns, &[query]) {
            out.extend(rows.into_iter().map(|r| HeldSocket {
                pid,
                local: r.local,
                cookie: r.cookie,
            }));
            // Rows without cookies cannot tell that a socket is gone.
            if cookies {
                read.insert(ns);
            }
        }
    };
    for (ns, pids) in &by_ns {
        // A namespace is listed for the pids in it, so there is a first.
        if let Some(&pid) = pids.first() {
            read_table(&spaces, *ns, pid);
        }
    }
    // Owners whose socket is in a namespace they are not in (they moved
    // since they made it): most often portwatch's own, read at once;
    // another is reached through one of the owner's sockets, each walked
    // once and asked within the look's budget (past it, a resync finds
    // the socket).
    let mut asks = ElsewhereAsks::default();
    let mut fds: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
    let mut reached: HashSet<u64> = by_ns.keys().copied().collect();
    for &(pid, ns) in owners {
        if ns == 0 || reached.contains(&ns) {
            continue;
        }
        if !spaces.contains(ns) {
            let walked = fds.entry(pid).or_insert_with(|| socket_fds(pid));
            let Some(fd) = walked
                .iter()
                .find_map(|&(fd, inode)| asks.namespace(pid, fd, inode).filter(|(i, _)| *i == ns))
                .map(|(_, fd)| fd)
            else {
                continue;
            };
            spaces.add_fd(ns, fd);
        }
        reached.insert(ns);
        read_table(&spaces, ns, pid);
    }
    (out, read)
}

/// Sockets asked for their namespace in one look, past the tables: each
/// ask is seven syscalls, and what another user holds must not make a
/// look long.
const ELSEWHERE_ASKS: u32 = 64;

/// The asks of one look (see [`ELSEWHERE_ASKS`]).
#[derive(Default)]
struct ElsewhereAsks(u32);

impl ElsewhereAsks {
    /// Socket `fd` (`inode`) of `pid`'s namespace, while the budget lasts.
    fn namespace(&mut self, pid: u32, fd: u32, inode: u64) -> Option<(u64, OwnedFd)> {
        if self.0 >= ELSEWHERE_ASKS {
            return None;
        }
        self.0 += 1;
        netns::of_socket(pid, fd, inode)
    }

    /// Whether socket `fd` of `pid` is of `proto`, while the budget lasts.
    fn is(&mut self, pid: u32, fd: u32, proto: Proto) -> bool {
        if self.0 >= ELSEWHERE_ASKS {
            return false;
        }
        self.0 += 1;
        netns::socket_proto(pid, fd) == Some(proto)
    }
}

/// A UDP socket a process holds, as the listener it would be with that
/// process its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeldUdp {
    pub listener: Listener,
    /// Whether it has a remote address (a client's, most often).
    pub connected: bool,
}

/// A socket table's entry as a listener held by `pid` (0: no holder
/// found) named `comm`, in `cgroup`; nothing judged or enriched yet.
fn entry_listener(e: &SocketEntry, pid: u32, comm: String, cgroup: String) -> Listener {
    Listener {
        proto: e.proto,
        address: e.local.ip(),
        port: e.local.port(),
        pid,
        comm,
        uid: e.uid,
        cookie: e.cookie,
        inode: Some(e.inode),
        netns: e.netns,
        cgroup,
        socket_cgroup: e.cgroup,
        container: None,
        opened_at: None,
        exposure: None,
        published_as: Vec::new(),
        context: None,
    }
}

/// The UDP sockets the processes `pids` hold (see [`held_sockets`]).
pub(crate) fn held_udp(pids: &[u32]) -> Vec<HeldUdp> {
    let mut stats = HashMap::new();
    let mut cgroups: HashMap<u32, String> = HashMap::new();
    held_sockets(pids, SocketQuery::every_state(crate::event::Proto::Udp))
        .into_iter()
        .filter_map(|(pid, e)| {
            let owner = holder(&mut stats, pid)?;
            let cgroup = cgroups.entry(pid).or_insert_with(|| cgroup_of(pid)).clone();
            let listener = entry_listener(&e, pid, owner.comm, cgroup);
            let connected = !e.remote.ip().is_unspecified() || e.remote.port() != 0;
            Some(HeldUdp {
                listener,
                connected,
            })
        })
        .collect()
}

/// The sockets `query` asks for that the processes `pids` hold: one
/// table read per namespace, one descriptor walk per process. A socket is
/// looked for in its holder's namespace first. When the query takes every
/// state, one not there lives in another namespace (made there, then its
/// holder moved, which anyone may do inside a user namespace): most often
/// portwatch's own, whose table is read once; else it is asked for its
/// namespace (SIOCGSKNS), within the look's budget. (A query of some
/// states only would ask this of every socket in the others, a server's
/// connections for listeners.)
fn held_sockets(pids: &[u32], query: SocketQuery) -> Vec<(u32, SocketEntry)> {
    let (mut spaces, by_ns) = namespaces_of(pids);
    let mut tables: HashMap<u64, HashMap<u64, SocketEntry>> = HashMap::new();
    let mut out = Vec::new();
    let mut elsewhere: Vec<(u32, u32, u64)> = Vec::new();
    for (ns, pids) in &by_ns {
        let table = tables
            .entry(*ns)
            .or_insert_with(|| by_inode(&spaces, *ns, query));
        for &pid in pids {
            for (fd, inode) in socket_fds(pid) {
                match table.get(&inode) {
                    Some(r) => out.push((pid, *r)),
                    None if query.states == States::ALL => elsewhere.push((pid, fd, inode)),
                    None => {}
                }
            }
        }
    }
    if elsewhere.is_empty() {
        return out;
    }
    if let Some(own) = netns::of_process(std::process::id()) {
        let table = tables
            .entry(own)
            .or_insert_with(|| by_inode(&spaces, own, query));
        elsewhere.retain(|&(pid, _, inode)| match table.get(&inode) {
            Some(r) => {
                out.push((pid, *r));
                false
            }
            None => true,
        });
    }
    // One holder of a socket is enough to ask.
    let mut asked = HashSet::new();
    let mut asks = ElsewhereAsks::default();
    for (pid, fd, inode) in elsewhere {
        if !asked.insert(inode) || !asks.is(pid, fd, query.proto) {
            continue;
        }
        let Some((ns, ns_fd)) = asks.namespace(pid, fd, inode) else {
            continue;
        };
        let table = tables.entry(ns).or_insert_with(|| {
            spaces.add_fd(ns, ns_fd);
            by_inode(&spaces, ns, query)
        });
        if let Some(r) = table.get(&inode) {
            out.push((pid, *r));
        }
    }
    out
}

/// The rows of `query` in namespace `ns`'s table, by socket inode.
fn by_inode(spaces: &Namespaces, ns: u64, query: SocketQuery) -> HashMap<u64, SocketEntry> {
    table_rows(spaces, ns, &[query])
        .map(|(_, rows)| rows.into_iter().map(|r| (r.inode, r)).collect())
        .unwrap_or_default()
}

/// The network namespaces of processes `pids`, each with its pids, and
/// the handles to enter them.
fn namespaces_of(pids: &[u32]) -> (Namespaces, HashMap<u64, Vec<u32>>) {
    let mut by_ns: HashMap<u64, Vec<u32>> = HashMap::new();
    for &pid in pids {
        if let Some(ns) = netns::of_process(pid) {
            by_ns.entry(ns).or_default().push(pid);
        }
    }
    let processes: Vec<(u32, Option<u64>)> = by_ns
        .iter()
        .flat_map(|(ns, pids)| pids.iter().map(|p| (*p, Some(*ns))))
        .collect();
    (Namespaces::from_processes(&processes), by_ns)
}

/// Whether a process holds a socket, and the holder a scan names (pid,
/// name) when there is one.
pub(crate) struct Holders {
    pub held: bool,
    pub holder: Option<(u32, String)>,
}

/// Who holds the socket of `proto` bound to `local` in namespace `netns`
/// (see [`Holders`]), as seen from process `pid`. `None` when no such
/// socket exists.
pub(crate) fn socket_holders(
    pid: u32,
    proto: crate::event::Proto,
    local: SocketAddr,
    netns: u64,
) -> Result<Option<Holders>> {
    let sockets: Vec<SocketInfo> = scan_sockets(&[SocketQuery::every_state(proto)])?
        .into_iter()
        .filter(|s| s.local == local && s.netns == netns && s.remote.is_none())
        .collect();
    if sockets.is_empty() {
        return Ok(None);
    }
    let held = socket_fds(pid)
        .into_iter()
        .any(|(_, inode)| sockets.iter().any(|s| s.inode == inode));
    let holder = sockets
        .iter()
        .find(|s| s.pid != 0)
        .map(|s| (s.pid, s.comm.clone()));
    Ok(Some(Holders { held, holder }))
}

/// The ephemeral port range of portwatch's own namespace (used for all:
/// containers rarely change it); the kernel's default when unreadable.
pub(crate) fn ephemeral_ports() -> std::ops::RangeInclusive<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>());
            Some(it.next()?.ok()?..=it.next()?.ok()?)
        })
        .unwrap_or(32768..=60999)
}

/// Whether a network namespace with inode `ino` exists: one a process is
/// in, or one of `ip netns`.
pub(crate) fn netns_exists(ino: u64) -> bool {
    list_processes().is_ok_and(|all| Namespaces::new(&all).contains(ino))
}

/// (pid, parent pid) of every process.
pub(crate) fn parent_links() -> Result<Vec<(u32, u32)>> {
    Ok(list_processes()?
        .into_iter()
        .filter_map(|(pid, _)| Some((pid, read_stat(pid)?.ppid)))
        .collect())
}

/// The processes whose parent is `pid`: (pid, name), by pid; empty when
/// /proc cannot be listed.
pub(crate) fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut children: Vec<(u32, String)> = pids()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|child| {
            let stat = read_stat(child)?;
            (stat.ppid == pid).then_some((child, stat.comm))
        })
        .collect();
    children.sort_unstable_by_key(|(pid, _)| *pid);
    children
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(local: &str, inode: u64) -> SocketEntry {
        SocketEntry {
            proto: Proto::Tcp,
            state: crate::sys::socket_table::state::LISTEN,
            local: local.parse().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
            uid: 1000,
            inode,
            cookie: Some(inode + 1000),
            netns: 7,
            cgroup: 0,
        }
    }

    fn holder(pid: u32, start_time: u64, comm: &str) -> Holder {
        Holder {
            pid,
            start_time,
            comm: comm.into(),
        }
    }

    #[test]
    fn joins_entries_with_the_oldest_holder() {
        let mut holders = HashMap::new();
        holders.insert(77, vec![holder(12, 9, "worker"), holder(10, 5, "master")]);
        let all = |_: u32| true;
        let out = with_owners(
            vec![entry("127.0.0.1:8080", 77), entry("[::]:22", 78)],
            &holders,
            &all,
        );
        let got: Vec<(String, Option<(u32, String)>)> = out
            .into_iter()
            .map(|(e, h)| (e.local.to_string(), h.map(|h| (h.pid, h.comm))))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "127.0.0.1:8080".to_string(),
                    Some((10, "master".to_string()))
                ),
                ("[::]:22".to_string(), None)
            ]
        );
    }

    #[test]
    fn a_filter_picks_an_admitted_holder_or_drops_the_socket() {
        let mut holders = HashMap::new();
        holders.insert(77, vec![holder(1, 0, "init"), holder(50, 9, "service")]);
        let only_50 = |pid: u32| pid == 50;
        let out = with_owners(
            vec![entry("0.0.0.0:80", 77), entry("0.0.0.0:81", 78)],
            &holders,
            &only_50,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.as_ref().map(|h| h.pid), Some(50));
    }

    #[test]
    fn stat_names_are_taken_as_bytes() {
        let line = b"1234 (a) b (\xff\x1b) S 77 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3\n";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.comm, "a) b (\\xff\\x1b");
        assert_eq!((stat.ppid, stat.start_time), (77, 987654));
        assert_eq!((stat.cpu_ticks, stat.threads, stat.rss_pages), (0, 1, 2));
        // The lossy decoding would have made two names alike.
        let other = b"1 (\xfe) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 1 2\n";
        assert_ne!(
            parse_stat(other).unwrap().comm,
            parse_stat(b"1 (\xff) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 1 2\n")
                .unwrap()
                .comm
        );
        assert_eq!(parse_stat(b"garbage"), None);
    }
}
