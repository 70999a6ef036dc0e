//! A minimal reader of BTF (the kernel's type information) that answers two
//! questions: at which byte offset does a struct member live, and what is
//! an enum constant's value?
//!
//! The kernel programs read `struct sock` and `struct net` fields, whose
//! layout varies between kernels; these offsets are looked up in
//! `/sys/kernel/btf/vmlinux` at load time. aya keeps its own BTF parser's
//! type lookups private, hence this small reader.

const MAGIC: u16 = 0xeb9f;

const KIND_VOID: u32 = 0;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Why a BTF blob could not be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BtfError {
    #[error("not BTF data (bad magic or header)")]
    BadHeader,
    #[error("BTF data is truncated")]
    Truncated,
    #[error("BTF type kind {0} is unknown")]
    UnknownKind(u32),
}

/// Parsed BTF: the blob itself, borrowed, plus where each type starts.
/// Types are decoded on demand, so the kernel's BTF (several MB, over
/// 100,000 types) costs little more than one index entry per type.
pub(crate) struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// Byte offset of each type in `types`; index = type id - 1.
    starts: Vec<u32>,
}

#[derive(Clone, Copy)]
struct TypeHeader {
    name_off: u32,
    kind: u32,
    kind_flag: bool,
    vlen: usize,
    ref_type: u32,
    /// Where the kind-specific data begins.
    data: usize,
}

fn u16_at(b: &[u8], off: usize) -> Result<u16, BtfError> {
    let s = b.get(off..off + 2).ok_or(BtfError::Truncated)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    let s = b.get(off..off + 4).ok_or(BtfError::Truncated)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn extra_len(kind: u32, vlen: usize) -> Result<usize, BtfError> {
    Ok(match kind {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => vlen * 12,
        KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
        KIND_VOID | KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST
        | KIND_RESTRICT | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
        other => return Err(BtfError::UnknownKind(other)),
    })
}

impl<'a> Btf<'a> {
    /// Parses little-endian BTF as found in `/sys/kernel/btf/vmlinux`.
    pub(crate) fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        if u16_at(data, 0)? != MAGIC {
            return Err(BtfError::BadHeader);
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let field = |off| u32_at(data, off).map(|v| v as usize);
        let (type_off, type_len, str_off, str_len) =
            (field(8)?, field(12)?, field(16)?, field(20)?);
        let range = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off).ok_or(BtfError::BadHeader)?;
            let end = start.checked_add(len).ok_or(BtfError::BadHeader)?;
            data.get(start..end).ok_or(BtfError::Truncated)
        };
        let types = range(type_off, type_len)?;
        let strings = range(str_off, str_len)?;
        let mut starts = Vec::new();
        let mut pos = 0;
        while pos < types.len() {
            let info = u32_at(types, pos + 4)?;
            u32_at(types, pos + 8)?;
            starts.push(u32::try_from(pos).map_err(|_| BtfError::Truncated)?);
            pos += 12 + extra_len((info >> 24) & 0x1f, (info & 0xffff) as usize)?;
        }
        if pos != types.len() {
            return Err(BtfError::Truncated);
        }
        Ok(Btf {
            types,
            strings,
            starts,
        })
    }

    fn header(&self, id: u32) -> Option<TypeHeader> {
        let pos = *self.starts.get((id as usize).checked_sub(1)?)? as usize;
        let info = u32_at(self.types, pos + 4).ok()?;
        Some(TypeHeader {
            name_off: u32_at(self.types, pos).ok()?,
            kind: (info >> 24) & 0x1f,
            kind_flag: info >> 31 == 1,
            vlen: (info & 0xffff) as usize,
            ref_type: u32_at(self.types, pos + 8).ok()?,
            data: pos + 12,
        })
    }

    /// (name offset, type id, bit offset) of each member of a struct/union.
    fn members(&self, t: TypeHeader) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        (0..t.vlen).filter_map(move |i| {
            let m = t.data + i * 12;
            let raw = u32_at(self.types, m + 8).ok()?;
            // With kind_flag, the top byte is a bitfield size.
            let bits = if t.kind_flag { raw & 0xff_ffff } else { raw };
            Some((
                u32_at(self.types, m).ok()?,
                u32_at(self.types, m + 4).ok()?,
                bits,
            ))
        })
    }

    fn name(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Follows typedef, const, volatile, restrict and type tags.
    fn resolve(&self, mut id: u32) -> Option<TypeHeader> {
        for _ in 0..32 {
            let t = self.header(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.ref_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Finds `name` among the members of `t`, looking inside anonymous
    /// structs and unions; returns the bit offset and the member's type id.
    fn find_member(&self, t: TypeHeader, name: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        if let Some((_, ty, off)) = self
            .members(t)
            .find(|(n, _, _)| *n != 0 && self.name(*n) == name)
        {
            return Some((off, ty));
        }
        for (_, ty, off) in self.members(t).filter(|(n, _, _)| *n == 0) {
            let inner = self.resolve(ty)?;
            if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                && let Some((o, found)) = self.find_member(inner, name, depth + 1)
            {
                return Some((off + o, found));
            }
        }
        None
    }

    /// The first type of `kind` named `name` (duplicates in vmlinux are
    /// identical).
    fn find_named(&self, kind: u32, name: &str) -> Option<TypeHeader> {
        self.header(self.named_id(kind, name)?)
    }

    /// The id of the first type of `kind` named `name`.
    fn named_id(&self, kind: u32, name: &str) -> Option<u32> {
        (1..=self.starts.len() as u32).find(|&id| {
            self.header(id)
                .is_some_and(|t| t.kind == kind && t.name_off != 0 && self.name(t.name_off) == name)
        })
    }

    /// Byte offset of `path` (e.g. `["ns", "inum"]`) inside `struct name`.
    /// `None` when a name is missing or the member is a bitfield.
    pub(crate) fn member_offset(&self, name: &str, path: &[&str]) -> Option<u32> {
        let mut t = self.find_named(KIND_STRUCT, name)?;
        let mut bits = 0;
        for (i, field) in path.iter().enumerate() {
            let (off, ty) = self.find_member(t, field, 0)?;
            bits += off;
            if i + 1 < path.len() {
                t = self.resolve(ty)?;
            }
        }
        (bits % 8 == 0).then_some(bits / 8)
    }

    /// The type id of `typedef name`.
    pub(crate) fn typedef_id(&self, name: &str) -> Option<u32> {
        self.named_id(KIND_TYPEDEF, name)
    }

    /// The value of constant `value` of `enum name`.
    pub(crate) fn enum_value(&self, name: &str, value: &str) -> Option<u32> {
        let t = self.find_named(KIND_ENUM, name)?;
        (0..t.vlen).find_map(|i| {
            let at = t.data + i * 8;
            let n = u32_at(self.types, at).ok()?;
            (self.name(n) == value).then(|| u32_at(self.types, at + 4).ok())?
        })
    }
}

/// A BTF blob whose type `id` is `typedef name` (to void), every type
/// before it a pointer to void: all a BTF tracepoint's load asks of the
/// kernel's BTF is its `btf_trace_*` typedef's id. aya's own parse of the
/// kernel's 100,000 types raises the start-up peak by 18 MiB; this blob
/// is 12 bytes per type before the one wanted, and aya's parse of it
/// about 50 (2 MiB for this kernel's id 38,222). Little-endian, like
/// everything this reader reads.
pub(crate) fn typedef_stand_in(id: u32, name: &str) -> Vec<u8> {
    let fillers = id.saturating_sub(1) as usize;
    let mut types = Vec::with_capacity((fillers + 1) * 12);
    for _ in 0..fillers {
        push_words(&mut types, &[0, KIND_PTR << 24, 0]);
    }
    push_words(&mut types, &[1, KIND_TYPEDEF << 24, 0]);
    let mut strings = Vec::with_capacity(name.len() + 2);
    strings.push(0);
    strings.extend_from_slice(name.as_bytes());
    strings.push(0);
    blob(&types, &strings)
}

fn push_words(out: &mut Vec<u8>, words: &[u32]) {
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
}

/// A little-endian BTF blob: its header, then `types`, then `strings`.
fn blob(types: &[u8], strings: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + types.len() + strings.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[1, 0]);
    let (type_len, str_len) = (types.len() as u32, strings.len() as u32);
    push_words(&mut out, &[24, 0, type_len, type_len, str_len]);
    out.extend_from_slice(types);
    out.extend_from_slice(strings);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a BTF blob from (name, kind, size_or_type, members) entries.
    pub(crate) struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Builder {
        pub(crate) fn new() -> Self {
            Builder {
                types: Vec::new(),
                strings: vec![0],
            }
        }

        fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn push(&mut self, vals: &[u32]) {
            push_words(&mut self.types, vals);
        }

        pub(crate) fn int(&mut self, name: &str, size: u32) {
            let n = self.str(name);
            self.push(&[n, KIND_INT << 24, size, size * 8]);
        }

        pub(crate) fn enumeration(&mut self, name: &str, values: &[(&str, u32)]) {
            let n = self.str(name);
            self.push(&[n, (KIND_ENUM << 24) | values.len() as u32, 4]);
            for (vname, v) in values {
                let vn = self.str(vname);
                self.push(&[vn, *v]);
            }
        }

        pub(crate) fn typedef(&mut self, name: &str, target: u32) {
            let n = self.str(name);
            self.push(&[n, KIND_TYPEDEF << 24, target]);
        }

        /// members: (name, type id, bit offset)
        pub(crate) fn composite(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32)],
        ) {
            let n = self.str(name);
            self.push(&[n, (kind << 24) | members.len() as u32, size]);
            for (mname, ty, off) in members {
                let mn = self.str(mname);
                self.push(&[mn, *ty, *off]);
            }
        }

        pub(crate) fn build(&self) -> Vec<u8> {
            blob(&self.types, &self.strings)
        }
    }

    /// `struct sock_common` with its ports inside an anonymous union of an
    /// anonymous struct, like the kernel's.
    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        b.int("unsigned short", 2); // 1
        b.int("unsigned int", 4); // 2
        // 3: anonymous struct { u16 skc_dport; u16 skc_num; }
        b.composite(
            KIND_STRUCT,
            "",
            4,
            &[("skc_dport", 1, 0), ("skc_num", 1, 16)],
        );
        // 4: anonymous union { u32 skc_portpair; struct 3; }
        b.composite(KIND_UNION, "", 4, &[("skc_portpair", 2, 0), ("", 3, 0)]);
        // 5: struct ns_common { unsigned int stashed; unsigned int inum; }
        b.composite(
            KIND_STRUCT,
            "ns_common",
            8,
            &[("stashed", 2, 0), ("inum", 2, 32)],
        );
        // 6: struct net { u32 a; u32 b; struct ns_common ns; }
        b.composite(
            KIND_STRUCT,
            "net",
            16,
            &[("a", 2, 0), ("b", 2, 32), ("ns", 7, 64)],
        );
        // 7: typedef ns_common_t -> 5 (members reached through a typedef)
        b.typedef("ns_common_t", 5);
        // 8: struct sock_common { u32 daddr; u32 hash; union 4 (at byte 12) }
        b.composite(
            KIND_STRUCT,
            "sock_common",
            16,
            &[("skc_daddr", 2, 0), ("skc_hash", 2, 64), ("", 4, 96)],
        );
        b.build()
    }

    #[test]
    fn resolves_nested_anonymous_members() {
        let blob = sample();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.member_offset("sock_common", &["skc_num"]), Some(14));
        assert_eq!(btf.member_offset("sock_common", &["skc_dport"]), Some(12));
        assert_eq!(btf.member_offset("sock_common", &["skc_hash"]), Some(8));
        assert_eq!(btf.member_offset("net", &["ns", "inum"]), Some(12));
    }

    #[test]
    fn reads_enum_constants() {
        let mut b = Builder::new();
        b.int("int", 4);
        b.enumeration("sock_flags", &[("SOCK_DEAD", 0), ("SOCK_RCU_FREE", 23)]);
        let blob = b.build();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.enum_value("sock_flags", "SOCK_RCU_FREE"), Some(23));
        assert_eq!(btf.enum_value("sock_flags", "SOCK_NOPE"), None);
        assert_eq!(btf.enum_value("nope", "SOCK_DEAD"), None);
    }

    #[test]
    fn missing_names_are_none() {
        let blob = sample();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.member_offset("sock_common", &["nope"]), None);
        assert_eq!(btf.member_offset("nothing", &["skc_num"]), None);
        assert_eq!(btf.member_offset("net", &["ns", "nope"]), None);
    }

    #[test]
    fn rejects_bad_blobs() {
        assert!(matches!(Btf::parse(b""), Err(BtfError::Truncated)));
        assert!(matches!(Btf::parse(&[0u8; 32]), Err(BtfError::BadHeader)));
        let mut blob = sample();
        blob.truncate(blob.len() - 30);
        assert!(Btf::parse(&blob).is_err());
    }

    #[test]
    fn reads_this_kernel_when_available() {
        // A sanity check of the real format, on kernels that have BTF.
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            eprintln!("skipped: this kernel has no /sys/kernel/btf/vmlinux");
            return;
        };
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.member_offset("sock_common", &["skc_num"]), Some(14));
        assert!(btf.member_offset("net", &["ns", "inum"]).is_some());
        assert!(btf.member_offset("sock_common", &["skc_net"]).is_some());
        // The path from a socket to its cgroup's id (UDP release programs
        // per cgroup).
        assert!(
            btf.member_offset("sock", &["sk_cgrp_data", "cgroup"])
                .is_some()
        );
        assert!(btf.member_offset("cgroup", &["kn"]).is_some());
        assert!(btf.member_offset("kernfs_node", &["id"]).is_some());
        assert!(btf.enum_value("sock_flags", "SOCK_RCU_FREE").is_some());
        // The stand-in names the tracepoint's typedef by the id aya's own
        // parse of the kernel's BTF finds.
        let name = "btf_trace_inet_sock_set_state";
        let id = btf.typedef_id(name).unwrap();
        let full = aya::Btf::parse(&data, aya::Endianness::Little).unwrap();
        let kind = aya_obj::btf::BtfKind::Typedef;
        assert_eq!(full.id_by_type_name_kind(name, kind).unwrap(), id);
        let stand_in = aya::Btf::parse(&typedef_stand_in(id, name), aya::Endianness::Little);
        assert_eq!(
            stand_in.unwrap().id_by_type_name_kind(name, kind).unwrap(),
            id
        );
    }

    #[test]
    fn the_stand_in_holds_one_typedef_at_its_id() {
        let blob = typedef_stand_in(5, "btf_trace_x");
        let ours = Btf::parse(&blob).unwrap();
        assert_eq!(ours.typedef_id("btf_trace_x"), Some(5));
        assert_eq!(ours.typedef_id("btf_trace_y"), None);
        let aya = aya::Btf::parse(&blob, aya::Endianness::Little).unwrap();
        let kind = aya_obj::btf::BtfKind::Typedef;
        assert_eq!(aya.id_by_type_name_kind("btf_trace_x", kind).unwrap(), 5);
        // Id 1 is the first type.
        let first = typedef_stand_in(1, "t");
        assert_eq!(Btf::parse(&first).unwrap().typedef_id("t"), Some(1));
    }
}
