//! tracefs: mounted on demand, and the source of tracepoint record layouts.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use portwatch_common::{SetStateOffsets, TreeOffsets};
use rustix::mount::{MountFlags, mount};

use crate::error::{Error, Result};

/// Where tracefs lives on current kernels.
pub(crate) const TRACEFS: &str = "/sys/kernel/tracing";

fn is_mounted(dir: &Path) -> bool {
    dir.join("events").is_dir()
}

/// Returns the tracefs directory, mounting tracefs first when it is missing.
pub(crate) fn ensure_mounted() -> Result<PathBuf> {
    let dir = PathBuf::from(TRACEFS);
    if is_mounted(&dir) {
        return Ok(dir);
    }
    let legacy = Path::new("/sys/kernel/debug/tracing");
    if is_mounted(legacy) {
        return Ok(legacy.to_path_buf());
    }
    mount_tracefs(&dir).map_err(|source| Error::TracefsMount {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

fn mount_tracefs(dir: &Path) -> io::Result<()> {
    mount("nodev", dir, "tracefs", MountFlags::empty(), "")?;
    Ok(())
}

/// Reads the record layout of `sock:inet_sock_set_state`.
pub(crate) fn set_state_offsets(tracefs: &Path) -> Result<SetStateOffsets> {
    let path = tracefs.join("events/sock/inet_sock_set_state/format");
    let text = fs::read_to_string(&path).map_err(|source| Error::TracepointFormat {
        path: path.clone(),
        source,
    })?;
    parse_set_state_format(&text).map_err(|field| Error::TracepointField { path, field })
}

/// One `field:` line of a tracepoint format file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FormatField<'a> {
    pub name: &'a str,
    pub offset: u32,
    pub size: u32,
}

/// Parses a line such as
/// `field:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;` (tab separated).
pub(crate) fn parse_field_line(line: &str) -> Option<FormatField<'_>> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    for part in line.trim().split(';') {
        let part = part.trim();
        if let Some(d) = part.strip_prefix("field:") {
            decl = Some(d.trim());
        } else if let Some(v) = part.strip_prefix("offset:") {
            offset = v.trim().parse().ok();
        } else if let Some(v) = part.strip_prefix("size:") {
            size = v.trim().parse().ok();
        }
    }
    // The name is the declaration's last word, without any array suffix:
    // `const void * skaddr` -> `skaddr`, `__u8 saddr_v6[16]` -> `saddr_v6`.
    let decl = decl?;
    let last = decl.rsplit([' ', '*']).next()?;
    let name = last.split('[').next()?;
    Some(FormatField {
        name,
        offset: offset?,
        size: size?,
    })
}

/// Extracts the offsets portwatch needs, checking each field's size so a
/// kernel with a different record cannot make the program misread it.
/// On failure, returns the name of the first missing or mis-sized field.
pub(crate) fn parse_set_state_format(text: &str) -> Result<SetStateOffsets, &'static str> {
    let fields: Vec<FormatField<'_>> = text.lines().filter_map(parse_field_line).collect();
    let find = |name: &'static str, size: u32| {
        fields
            .iter()
            .find(|f| f.name == name && f.size == size)
            .map(|f| f.offset)
            .ok_or(name)
    };
    Ok(SetStateOffsets {
        skaddr: find("skaddr", 8)?,
        oldstate: find("oldstate", 4)?,
        newstate: find("newstate", 4)?,
        sport: find("sport", 2)?,
        family: find("family", 2)?,
        protocol: find("protocol", 2)?,
        saddr: find("saddr", 4)?,
        saddr_v6: find("saddr_v6", 16)?,
    })
}

/// Reads the fork/exit record offsets the process-tree programs need.
pub(crate) fn tree_offsets(tracefs: &Path) -> Result<TreeOffsets> {
    let read = |event: &str| {
        let path = tracefs.join(format!("events/sched/{event}/format"));
        fs::read_to_string(&path)
            .map(|text| (path.clone(), text))
            .map_err(|source| Error::TracepointFormat { path, source })
    };
    let (fork_path, fork) = read("sched_process_fork")?;
    let (_, exit) = read("sched_process_exit")?;
    parse_tree_formats(&fork, &exit).map_err(|field| Error::TracepointField {
        path: fork_path,
        field,
    })
}

/// Pure: the fork record's `child_pid` and the exit record's optional
/// `group_dead` (absent before Linux 6.x: `u32::MAX`).
pub(crate) fn parse_tree_formats(fork: &str, exit: &str) -> Result<TreeOffsets, &'static str> {
    let find = |text: &str, name: &str, size: u32| {
        text.lines()
            .filter_map(parse_field_line)
            .find(|f| f.name == name && f.size == size)
            .map(|f| f.offset)
    };
    Ok(TreeOffsets {
        fork_child_pid: find(fork, "child_pid", 4).ok_or("child_pid")?,
        exit_group_dead: find(exit, "group_dead", 1).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT_6_18: &str = "name: inet_sock_set_state
ID: 2287
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: \"family=%s\"
";

    #[test]
    fn parses_the_6_18_layout() {
        assert_eq!(
            parse_set_state_format(FORMAT_6_18),
            Ok(SetStateOffsets::DEFAULT)
        );
    }

    #[test]
    fn follows_a_shifted_layout() {
        let shifted = FORMAT_6_18.replace("offset:16;", "offset:48;");
        assert_eq!(parse_set_state_format(&shifted).map(|o| o.oldstate), Ok(48));
    }

    #[test]
    fn names_a_missing_or_resized_field() {
        let missing = FORMAT_6_18.replace("sport", "source_port");
        assert_eq!(parse_set_state_format(&missing), Err("sport"));
        let resized = FORMAT_6_18.replace(
            "__u16 family;\toffset:28;\tsize:2",
            "int family;\toffset:28;\tsize:4",
        );
        assert_eq!(parse_set_state_format(&resized), Err("family"));
        assert_eq!(parse_set_state_format(""), Err("skaddr"));
    }

    #[test]
    fn field_lines() {
        assert_eq!(
            parse_field_line("\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;"),
            Some(FormatField {
                name: "skaddr",
                offset: 8,
                size: 8
            })
        );
        assert_eq!(
            parse_field_line("field:__u8 saddr_v6[16];\toffset:40;\tsize:16;"),
            Some(FormatField {
                name: "saddr_v6",
                offset: 40,
                size: 16
            })
        );
        assert_eq!(parse_field_line("print fmt: \"x\""), None);
        assert_eq!(parse_field_line("field:int x;\toffset:zz;\tsize:4;"), None);
    }

    #[test]
    fn fork_and_exit_formats() {
        let fork = "\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
                    \tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
                    \tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
        let exit = "\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\
                    \tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";
        let off = parse_tree_formats(fork, exit).unwrap();
        assert_eq!((off.fork_child_pid, off.exit_group_dead), (20, 32));
        let old_exit = "\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n";
        assert_eq!(
            parse_tree_formats(fork, old_exit).unwrap().exit_group_dead,
            u32::MAX
        );
        assert_eq!(parse_tree_formats("", exit), Err("child_pid"));
    }
}
