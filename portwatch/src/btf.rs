//! A minimal reader of BTF (the kernel's type information) that answers one
//! question: at which byte offset does a struct member live?
//!
//! The kernel programs read `struct sock` and `struct net` fields, whose
//! layout varies between kernels; these offsets are looked up in
//! `/sys/kernel/btf/vmlinux` at load time. aya keeps its own BTF parser's
//! type lookups private, hence this small reader.

use std::collections::HashMap;

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Why a BTF blob could not be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    #[error("not BTF data (bad magic or header)")]
    BadHeader,
    #[error("BTF data is truncated")]
    Truncated,
    #[error("BTF type kind {0} is unknown")]
    UnknownKind(u32),
}

#[derive(Clone, Copy, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Offset in bits from the start of the enclosing struct or union.
    bit_offset: u32,
}

#[derive(Clone, Debug)]
struct Type {
    name_off: u32,
    kind: u32,
    /// The referenced type, for typedef, const, volatile, ...
    ref_type: u32,
    members: Vec<Member>,
}

/// Parsed BTF: just enough to resolve member offsets.
pub struct Btf {
    /// Index = type id; id 0 is `void`.
    types: Vec<Type>,
    strings: Vec<u8>,
    structs_by_name: HashMap<String, u32>,
}

fn u16_at(b: &[u8], off: usize) -> Result<u16, BtfError> {
    let s = b.get(off..off + 2).ok_or(BtfError::Truncated)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    let s = b.get(off..off + 4).ok_or(BtfError::Truncated)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Btf {
    /// Parses little-endian BTF as found in `/sys/kernel/btf/vmlinux`.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if u16_at(data, 0)? != MAGIC {
            return Err(BtfError::BadHeader);
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let type_start = hdr_len.checked_add(type_off).ok_or(BtfError::BadHeader)?;
        let type_end = type_start
            .checked_add(type_len)
            .ok_or(BtfError::BadHeader)?;
        let str_start = hdr_len.checked_add(str_off).ok_or(BtfError::BadHeader)?;
        let str_end = str_start.checked_add(str_len).ok_or(BtfError::BadHeader)?;
        let type_data = data.get(type_start..type_end).ok_or(BtfError::Truncated)?;
        let strings = data
            .get(str_start..str_end)
            .ok_or(BtfError::Truncated)?
            .to_vec();

        let void = Type {
            name_off: 0,
            kind: 0,
            ref_type: 0,
            members: Vec::new(),
        };
        let mut types = vec![void];
        let mut pos = 0;
        while pos < type_data.len() {
            let name_off = u32_at(type_data, pos)?;
            let info = u32_at(type_data, pos + 4)?;
            let size_or_type = u32_at(type_data, pos + 8)?;
            pos += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = pos + i * 12;
                        let raw_offset = u32_at(type_data, m + 8)?;
                        members.push(Member {
                            name_off: u32_at(type_data, m)?,
                            type_id: u32_at(type_data, m + 4)?,
                            // With kind_flag, the top byte is a bitfield size.
                            bit_offset: if kind_flag {
                                raw_offset & 0xff_ffff
                            } else {
                                raw_offset
                            },
                        });
                    }
                    vlen * 12
                }
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                0 | 2 | 7 | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | 12 | 16
                | KIND_TYPE_TAG => 0,
                other => return Err(BtfError::UnknownKind(other)),
            };
            pos += extra;
            types.push(Type {
                name_off,
                kind,
                ref_type: size_or_type,
                members,
            });
        }
        if pos != type_data.len() {
            return Err(BtfError::Truncated);
        }
        let mut btf = Btf {
            types,
            strings,
            structs_by_name: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && t.name_off != 0 {
                let name = btf.name(t.name_off).to_string();
                // The first definition wins; duplicates are identical in vmlinux.
                btf.structs_by_name.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Follows typedef, const, volatile, restrict and type tags.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
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
    fn find_member(&self, t: &Type, name: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        for m in &t.members {
            if m.name_off != 0 && self.name(m.name_off) == name {
                return Some((m.bit_offset, m.type_id));
            }
        }
        for m in t.members.iter().filter(|m| m.name_off == 0) {
            let inner = self.resolve(m.type_id)?;
            if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                && let Some((off, ty)) = self.find_member(inner, name, depth + 1)
            {
                return Some((m.bit_offset + off, ty));
            }
        }
        None
    }

    /// Byte offset of `path` (e.g. `["ns", "inum"]`) inside `struct name`.
    /// `None` when a name is missing or the member is a bitfield.
    pub fn member_offset(&self, name: &str, path: &[&str]) -> Option<u32> {
        let mut t = self.resolve(*self.structs_by_name.get(name)?)?;
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
        pub fn new() -> Self {
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
            for v in vals {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
        }

        pub fn int(&mut self, name: &str, size: u32) {
            let n = self.str(name);
            self.push(&[n, KIND_INT << 24, size, size * 8]);
        }

        pub fn typedef(&mut self, name: &str, target: u32) {
            let n = self.str(name);
            self.push(&[n, KIND_TYPEDEF << 24, target]);
        }

        /// members: (name, type id, bit offset)
        pub fn composite(
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

        pub fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for v in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
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
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.member_offset("sock_common", &["skc_num"]), Some(14));
        assert_eq!(btf.member_offset("sock_common", &["skc_dport"]), Some(12));
        assert_eq!(btf.member_offset("sock_common", &["skc_hash"]), Some(8));
        assert_eq!(btf.member_offset("net", &["ns", "inum"]), Some(12));
    }

    #[test]
    fn missing_names_are_none() {
        let btf = Btf::parse(&sample()).unwrap();
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
        // Only a sanity check of the real format; skipped without BTF.
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return;
        };
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.member_offset("sock_common", &["skc_num"]), Some(14));
        assert!(btf.member_offset("net", &["ns", "inum"]).is_some());
        assert!(btf.member_offset("sock_common", &["skc_net"]).is_some());
    }
}
